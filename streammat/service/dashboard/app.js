// The streammat dashboard: polls the control API once a second and renders pipelines and
// jobs. No framework and no build step; the service serves this file as it is.
"use strict";

const POLL_MS = 1000;
const TOKEN_KEY = "streammat_token";

// A token handed over as https://host/#token=... is kept for later visits; image requests
// cannot send headers, so it also goes into a same-site cookie the API accepts for reads.
(function keepToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) document.cookie = `${TOKEN_KEY}=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
})();

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function say(text, bad = false) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = bad ? "bad" : "";
}

const fmt = {
  num: (x, digits = 1) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits)),
  ms: (s) => (s === null || s === undefined ? "–" : `${(s * 1000).toFixed(1)} ms`),
  eta: (s) => (s === null || s === undefined ? "–" : s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`),
};

function parseJson(text, what) {
  if (!text.trim()) return {};
  try { return JSON.parse(text); } catch (e) { throw new Error(`${what}: not valid JSON (${e.message})`); }
}

// -- pipelines: one card each, kept across polls so its MJPEG stream is not restarted ----
const cards = new Map();

function pipelineCard(name) {
  const stats = el("div", { class: "stats" });
  const card = el("div", { class: "card", "data-pipeline": name },
    el("h3", {}, name, " ", el("span", { class: "state" })),
    el("img", { class: "preview", alt: `preview of ${name}`, src: `/pipelines/${encodeURIComponent(name)}/preview.mjpg` }),
    stats,
    el("div", { class: "error-line" }),
    el("button", { onclick: () => act("POST", `/pipelines/${encodeURIComponent(name)}/restart`) }, "Restart"), " ",
    el("button", { onclick: () => act("DELETE", `/pipelines/${encodeURIComponent(name)}`) }, "Remove"));
  return card;
}

function renderPipelines(pipelines) {
  const box = document.getElementById("pipelines");
  const seen = new Set();
  for (const p of pipelines) {
    seen.add(p.name);
    if (!cards.has(p.name)) {
      cards.set(p.name, pipelineCard(p.name));
      box.append(cards.get(p.name));
    }
    const card = cards.get(p.name);
    const state = card.querySelector(".state");
    state.textContent = p.state;
    state.className = `state ${p.state}`;
    card.querySelector(".stats").replaceChildren(
      el("span", {}, "fps ", el("b", { class: "fps" }, fmt.num(p.fps))),
      el("span", {}, "latency p50/p95 ", el("b", { class: "latency" }, `${fmt.ms(p.latency_p50)} / ${fmt.ms(p.latency_p95)}`)),
      el("span", {}, "drops ", el("b", { class: "drops" }, String(p.drops ?? "–"))),
      el("span", {}, "restarts ", el("b", {}, String(p.restarts ?? "–"))));
    card.querySelector(".error-line").textContent = p.last_error || "";
  }
  for (const [name, card] of cards) {
    if (!seen.has(name)) { card.remove(); cards.delete(name); }
  }
  box.querySelector(".empty")?.toggleAttribute("hidden", cards.size > 0);
}

// -- jobs -------------------------------------------------------------------------------
function jobRow(job) {
  const percent = job.progress === null ? 0 : Math.round(job.progress * 100);
  const actions = [];
  if (job.state === "queued" || job.state === "running") {
    actions.push(el("button", { class: "cancel", onclick: () => act("DELETE", `/jobs/${job.id}`) }, "Cancel"));
  }
  if (["failed", "cancelled", "interrupted"].includes(job.state)) {
    actions.push(el("button", { class: "retry", onclick: () => act("POST", `/jobs/${job.id}/retry`) }, "Retry"));
  }
  const frames = job.frames_total ? `${job.frames_done}/${job.frames_total}` : `${job.frames_done}`;
  return el("tr", { "data-job": String(job.id), "data-state": job.state },
    el("td", {}, String(job.id)),
    el("td", {}, `${job.input} → ${job.output}`),
    el("td", {}, el("span", { class: `state ${job.state}` }, job.state)),
    el("td", {},
      el("div", { class: "track", title: `${percent} %` },
        el("div", { class: "bar", "data-progress": String(percent), style: `width: ${percent}%` })),
      el("small", {}, `${percent} % · ${frames} frames`)),
    el("td", {}, fmt.num(job.fps)),
    el("td", {}, job.state === "running" ? fmt.eta(job.eta) : "–"),
    el("td", {}, job.output_path || "", job.error ? el("div", { class: "error-line" }, job.error) : ""),
    el("td", {}, ...actions));
}

function renderJobs(jobs) {
  document.querySelector("#jobs tbody").replaceChildren(...jobs.map(jobRow));
}

async function act(method, path, body) {
  try {
    const data = await api(method, path, body);
    say(data.message || (data.error ? data.error : `${method} ${path}: ok`));
  } catch (e) {
    say(e.message, true);
  }
  refresh();
}

async function refresh() {
  try {
    const [pipelines, jobs] = await Promise.all([api("GET", "/pipelines"), api("GET", "/jobs")]);
    renderPipelines(pipelines.pipelines);
    renderJobs(jobs.jobs);
    document.getElementById("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    document.getElementById("status").textContent = `not connected: ${e.message}`;
  }
}

document.getElementById("submit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const body = {
      input: document.getElementById("job-input").value.trim(),
      output: document.getElementById("job-output").value.trim(),
      options: parseJson(document.getElementById("job-options").value, "options"),
    };
    const data = await api("POST", "/jobs", body);
    say(`job ${data.id} queued`);
  } catch (e) {
    say(e.message, true);
  }
  refresh();
});

document.getElementById("pipeline-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const settings = parseJson(document.getElementById("pipeline-settings").value, "settings");
    settings.source = document.getElementById("pipeline-source").value.trim();
    await act("POST", "/pipelines", { name: document.getElementById("pipeline-name").value.trim(), settings });
  } catch (e) {
    say(e.message, true);
  }
});

refresh();
setInterval(refresh, POLL_MS);
