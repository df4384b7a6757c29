// learnrec demo page: pick a learner, see their recommendations, click one, see the list change.
//
// No build step and no external scripts (the page must work offline). The API is the same
// origin that serves this page (the local gateway); demo learners and their bearer tokens
// come from config.json next to this file, which the gateway signs with a development key.
"use strict";

const K = 10;
const POLL_ATTEMPTS = 12; // the ingest path is asynchronous: give it a few seconds
const POLL_INTERVAL_MS = 500;
const SESSION_ID = "demo-" + randomId();

const state = {
  learners: new Map(), // user_id -> token
  userId: null,
  recommendation: null, // the last response of GET /recommend
  busy: false,
};

const $ = (id) => document.getElementById(id);

function randomId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") {
    return window.crypto.randomUUID();
  }
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.dataset.kind = kind || "info";
}

function setBusy(busy) {
  state.busy = busy;
  $("recommendations").setAttribute("aria-busy", String(busy));
  $("refresh").disabled = busy || !state.userId;
  $("learner").disabled = busy || state.learners.size === 0;
  for (const button of document.querySelectorAll("[data-testid=open-item]")) {
    button.disabled = busy;
  }
}

// Errors from the API are JSON {error, detail}; API Gateway's own are {message}.
async function describeError(response) {
  let text = response.status + " " + response.statusText;
  try {
    const body = await response.json();
    const detail = body.detail !== undefined ? body.detail : body.message;
    const parts = [body.error, typeof detail === "string" ? detail : JSON.stringify(detail)];
    text = response.status + ": " + parts.filter(Boolean).join(": ");
  } catch (_) {
    // not JSON: keep the status line
  }
  return text;
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.learners.get(state.userId) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await describeError(response));
  return response.json();
}

function fetchRecommendations(userId) {
  return api("GET", "/recommend/" + encodeURIComponent(userId) + "?k=" + K);
}

function idsOf(recommendation) {
  return recommendation.items.map((item) => item.content_id).join(",");
}

function render(recommendation) {
  state.recommendation = recommendation;
  const list = $("recommendations");
  const template = $("item-template");
  list.replaceChildren();
  list.dataset.recommendationId = recommendation.recommendation_id;
  for (const item of recommendation.items) {
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.contentId = item.content_id;
    node.querySelector("[data-testid=rank]").textContent = "#" + item.rank;
    const title = node.querySelector("[data-testid=title]");
    title.textContent = item.title || item.content_id;
    node.querySelector("[data-testid=content-id]").textContent = item.title ? item.content_id : "";
    node.querySelector("[data-testid=reason]").textContent = item.reason;
    node.querySelector("[data-testid=score]").textContent = "score " + item.score.toFixed(3);
    const open = node.querySelector("[data-testid=open-item]");
    open.setAttribute("aria-label", "Open " + (item.title || item.content_id));
    open.addEventListener("click", () => onOpen(item));
    list.appendChild(node);
  }
  const servedBy = $("served-by");
  servedBy.hidden = false;
  if (recommendation.fallback) {
    const degraded = recommendation.degraded.length ? " (" + recommendation.degraded.join(", ") + ")" : "";
    servedBy.textContent = "Fallback: " + recommendation.fallback + degraded;
    servedBy.dataset.fallback = recommendation.fallback;
  } else {
    servedBy.textContent = "Personalised by model " + (recommendation.model_version || "?");
    servedBy.dataset.fallback = "";
  }
  if (recommendation.items.length === 0) {
    setStatus("Nothing to recommend for " + recommendation.user_id + " right now.", "info");
  }
}

async function showLearner(userId) {
  state.userId = userId;
  setBusy(true);
  setStatus("Loading recommendations for " + userId + "…");
  try {
    const recommendation = await fetchRecommendations(userId);
    render(recommendation);
    setStatus(recommendation.items.length + " recommendations for " + userId + ".", "ok");
  } catch (error) {
    $("recommendations").replaceChildren();
    $("served-by").hidden = true;
    setStatus("Could not load recommendations: " + error.message, "error");
  } finally {
    setBusy(false);
  }
}

// The events a real client sends for a click: what was shown, what was clicked, what was opened.
function eventsForClick(recommendation, clicked) {
  const now = new Date().toISOString();
  const base = {
    user_id: recommendation.user_id,
    recommendation_id: recommendation.recommendation_id,
    session_id: SESSION_ID,
    ts: now,
  };
  const impressions = recommendation.items.map((item) => ({
    ...base,
    event_id: randomId(),
    content_id: item.content_id,
    event_type: "impression",
    context: { surface: "demo", rank: item.rank, model_version: recommendation.model_version },
  }));
  return [
    ...impressions,
    { ...base, event_id: randomId(), content_id: clicked.content_id, event_type: "click",
      context: { surface: "demo", rank: clicked.rank } },
    { ...base, event_id: randomId(), content_id: clicked.content_id, event_type: "view",
      context: { surface: "demo" } },
  ];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function onOpen(item) {
  if (state.busy || !state.recommendation) return;
  const before = state.recommendation;
  const userId = before.user_id;
  setBusy(true);
  try {
    setStatus("Sending the click on " + item.content_id + "…");
    const result = await api("POST", "/events", eventsForClick(before, item));
    if (result.rejected > 0) {
      const errors = result.results.filter((r) => !r.accepted).map((r) => JSON.stringify(r.errors));
      throw new Error(result.rejected + " events rejected: " + errors.join("; "));
    }
    for (let attempt = 1; attempt <= POLL_ATTEMPTS; attempt++) {
      setStatus(
        "Click on " + item.content_id + " sent (" + result.accepted + " events); waiting for it " +
          "to be ingested… (check " + attempt + " of " + POLL_ATTEMPTS + ")",
      );
      await sleep(POLL_INTERVAL_MS);
      if (state.userId !== userId) return; // the learner was switched meanwhile
      const after = await fetchRecommendations(userId);
      if (idsOf(after) !== idsOf(before)) {
        render(after);
        setStatus("Updated: the list reflects the click on " + item.content_id + ".", "ok");
        return;
      }
    }
    setStatus("The click was sent, but the list has not changed yet; try Show recommendations " +
      "again in a moment.", "warn");
  } catch (error) {
    setStatus("Could not record the click: " + error.message, "error");
  } finally {
    setBusy(false);
  }
}

async function start() {
  let config;
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (!response.ok) throw new Error(await describeError(response));
    config = await response.json();
  } catch (error) {
    setStatus("Could not load the demo learners (config.json): " + error.message, "error");
    return;
  }
  const select = $("learner");
  select.replaceChildren();
  for (const learner of config.learners) {
    state.learners.set(learner.user_id, learner.token);
    const option = document.createElement("option");
    option.value = learner.user_id;
    option.textContent = learner.user_id;
    select.appendChild(option);
  }
  if (state.learners.size === 0) {
    setStatus("No demo learners configured (start the gateway with --demo-learners).", "warn");
    return;
  }
  select.addEventListener("change", () => showLearner(select.value));
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    showLearner(select.value);
  });
  await showLearner(select.value);
}

document.addEventListener("DOMContentLoaded", start);
