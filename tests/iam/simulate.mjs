// Evaluates IAM requests against identity policies with @cloud-copilot/iam-simulate
// (package.json, pinned). Input on stdin: {"cases": [{principal, action, resource,
// account, context, policies: [policy documents]}]}. Output on stdout: one
// {result, errors} per case, in order; result is Allowed, ImplicitlyDenied,
// ExplicitlyDenied, or null when the simulator rejected the request as invalid.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const { cases } = JSON.parse(Buffer.concat(chunks).toString('utf8'))

const results = []
for (const c of cases) {
  const response = await runSimulation(
    {
      request: {
        principal: c.principal,
        action: c.action,
        resource: { resource: c.resource, accountId: c.account },
        contextVariables: c.context,
      },
      identityPolicies: c.policies.map((policy, i) => ({ name: `policy${i}`, policy })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    {},
  )
  if (response.resultType === 'error') {
    results.push({ result: null, errors: response.errors })
  } else {
    results.push({ result: response.overallResult, errors: null })
  }
}
process.stdout.write(JSON.stringify(results))
