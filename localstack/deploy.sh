#!/usr/bin/env bash
# Deploy the learnrec stack to LocalStack with cdklocal (needs Docker; see README.md).
#
#   localstack/deploy.sh            # stage dev
#   STAGE=staging localstack/deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

STAGE="${STAGE:-dev}"
ENDPOINT="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"

command -v docker >/dev/null || { echo "LocalStack needs Docker; it is not installed here." >&2; exit 1; }
[ -x node_modules/.bin/cdklocal ] || npm ci --no-audit --no-fund
[ -x .venv/bin/python ] || make install

if ! curl -fsS "$ENDPOINT/_localstack/health" >/dev/null; then
  docker compose -f localstack/docker-compose.yml up -d
  for _ in $(seq 60); do
    curl -fsS "$ENDPOINT/_localstack/health" >/dev/null && break
    sleep 2
  done
fi

# LocalStack accepts any credentials; its account is 000000000000.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_ENDPOINT_URL="$ENDPOINT"
ACCOUNT=000000000000

npx --no-install cdklocal bootstrap "aws://$ACCOUNT/$AWS_DEFAULT_REGION" \
  -c stage="$STAGE" -c account="$ACCOUNT" -c region="$AWS_DEFAULT_REGION"
npx --no-install cdklocal deploy -c stage="$STAGE" -c account="$ACCOUNT" \
  -c region="$AWS_DEFAULT_REGION" --require-approval never
