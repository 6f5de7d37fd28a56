#!/usr/bin/env node
// The end-to-end step's screenshots (scripts/e2e-test calls this in every load run).
//
//   capture.mjs load  --out DIR --locust URL --nginx URL --prometheus URL --alertmanager URL
//                     --users N --seconds S --alert required|optional
//       During the load: Locust's UI under the swarm, the app through nginx; then Prometheus' API is watched every
//       0.25 s for WebappReplicaDown firing, and Prometheus' alerts page and Alertmanager are
//       captured at once (again at the next firing if a capture missed it), for S seconds at
//       most. `required`: both must be captured; `optional`: a run whose alert never fired (or
//       resolved before the capture) is noted, not failed.
//   capture.mjs after --out DIR --agent URL --decider NAME [--picture PNG]
//       After the healing: the agent's page, logged in with $WEBHOOK_TOKEN, with an incident
//       healed by NAME in view; the run picture (render_dashboard.py's PNG) copied and checked.
//
// Every shot is checked (shot.mjs): the expected text in the DOM at capture time, and a PNG that
// is not blank. Results go to DIR/checks-PHASE.json and DIR/screens.json (all shots of the run).
// Exit 0: every required shot passed; 1: one failed (the message says which and why).

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { adopt, capture, launch } from './shot.mjs';
import * as pages from './pages.mjs';

const ALERT = 'WebappReplicaDown';
const POLL_MS = 250;

const log = (msg) => process.stderr.write(`${new Date().toTimeString().slice(0, 8)} screens: ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { positionals, values: opt } = parseArgs({
  allowPositionals: true,
  options: {
    out: { type: 'string' },
    locust: { type: 'string' },
    nginx: { type: 'string' },
    prometheus: { type: 'string' },
    alertmanager: { type: 'string' },
    users: { type: 'string' },
    seconds: { type: 'string' },
    alert: { type: 'string' },
    agent: { type: 'string' },
    decider: { type: 'string' },
    picture: { type: 'string' },
  },
});

function need(...names) {
  const missing = names.filter((n) => !opt[n]);
  if (missing.length) {
    log(`usage: ${missing.map((n) => `--${n}`).join(', ')} missing (see the head of capture.mjs)`);
    process.exit(2);
  }
}

async function getJson(url) {
  const r = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

async function alertFiring(prometheus) {
  const body = await getJson(`${prometheus}/api/v1/alerts`).catch(() => null);
  return Boolean(body?.data?.alerts?.some((a) => a.labels?.alertname === ALERT && a.state === 'firing'));
}

async function swarmRunning(locust, users) {
  const s = await getJson(`${locust}/stats/requests`).catch(() => null);
  return s?.state === 'running' && s.user_count === users && s.total_rps > 0;
}

function report(shot) {
  const px = shot.pixels ? `${shot.pixels.width}x${shot.pixels.height}, ${shot.pixels.colours} colours` : 'no PNG';
  if (shot.ok) {
    log(`${shot.file}: ok (${px}; ${shot.checks.map((c) => `${c.what}: "${c.found}"`).join('; ')})`);
  } else {
    log(`${shot.file || shot.name}: FAILED: ${shot.why} (${px})`);
  }
}

function save(out, phase, record) {
  fs.writeFileSync(path.join(out, `checks-${phase}.json`), `${JSON.stringify(record, null, 2)}\n`);
  // One list for the run, both phases (the README's set is picked from these).
  const all = ['load', 'after']
    .map((p) => path.join(out, `checks-${p}.json`))
    .filter((f) => fs.existsSync(f))
    .flatMap((f) => JSON.parse(fs.readFileSync(f, 'utf8')).shots);
  fs.writeFileSync(path.join(out, 'screens.json'), `${JSON.stringify(all, null, 2)}\n`);
}

function keep(out, shot) {
  // A later capture that passed replaces an earlier miss.
  if (shot.ok) fs.rmSync(path.join(out, `${shot.name}.failed.png`), { force: true });
  return shot;
}

async function loadPhase(context) {
  need('out', 'locust', 'nginx', 'prometheus', 'alertmanager', 'users', 'seconds', 'alert');
  const users = Number(opt.users);
  const required = opt.alert === 'required';
  const deadline = Date.now() + 1000 * Number(opt.seconds);
  const shots = [];
  const failures = [];
  const notes = [];

  // Locust: once the swarm runs at full strength and requests are counted.
  const swarmBy = Math.min(deadline, Date.now() + 30_000);
  while (!(await swarmRunning(opt.locust, users)) && Date.now() < swarmBy) await sleep(500);
  const loc = keep(opt.out, await capture(context, opt.out, pages.locust(opt.locust, users)));
  shots.push(loc);
  report(loc);
  if (!loc.ok) failures.push(`Locust under load: ${loc.why}`);

  // What users get meanwhile: the app through nginx.
  const app = keep(opt.out, await capture(context, opt.out, pages.nginx(opt.nginx)));
  shots.push(app);
  report(app);
  if (!app.ok) failures.push(`the app through nginx: ${app.why}`);

  // The alert: captured while Prometheus says it fires.
  const promUrl = await pages.prometheusAlertsUrl(opt.prometheus);
  const amUi = await pages.alertmanagerHasUi(opt.alertmanager);
  log(`watching Prometheus for ${ALERT} firing (${opt.alert}) for ${Math.round((deadline - Date.now()) / 1000)} s; pages: ${promUrl}, ${amUi ? "Alertmanager's UI" : "Alertmanager's API (no web UI in this image)"}`);
  let prom = null;
  let am = null;
  let firings = 0;
  let wasFiring = false;
  while (Date.now() < deadline && !(prom?.ok && am?.ok)) {
    const firing = await alertFiring(opt.prometheus);
    if (!firing) {
      wasFiring = false;
      await sleep(POLL_MS);
      continue;
    }
    if (!wasFiring) firings += 1;
    wasFiring = true;
    const t0 = Date.now();
    await Promise.all([
      prom?.ok ? null : capture(context, opt.out, pages.prometheus(promUrl)).then((s) => { prom = keep(opt.out, s); }),
      am?.ok ? null : capture(context, opt.out, pages.alertmanager(opt.alertmanager, amUi)).then((s) => { am = keep(opt.out, s); }),
    ]);
    log(`${ALERT} firing (#${firings}): captured in ${((Date.now() - t0) / 1000).toFixed(1)} s: prometheus ${prom.ok ? 'ok' : 'missed'}, alertmanager ${am.ok ? 'ok' : 'missed'}`);
  }
  for (const s of [prom, am].filter(Boolean)) {
    shots.push(s);
    report(s);
  }
  const missing = [];
  if (!prom?.ok) missing.push(`Prometheus: ${prom ? prom.why : `${ALERT} never fired`}`);
  if (!am?.ok) missing.push(`Alertmanager: ${am ? am.why : `${ALERT} never fired`}`);
  if (missing.length) {
    const what = `${ALERT} firing not captured (it fired ${firings} times in the watch): ${missing.join('; ')}`;
    if (required) failures.push(what);
    else notes.push(`${what}; not required on this path`);
  }
  return { shots, failures, notes, alert: { mode: opt.alert, firings } };
}

async function afterPhase(context) {
  need('out', 'agent', 'decider');
  const shots = [];
  const failures = [];
  const notes = [];
  const ag = await capture(context, opt.out, pages.agent(opt.agent, process.env.WEBHOOK_TOKEN || '', opt.decider));
  shots.push(ag);
  report(ag);
  if (!ag.ok) failures.push(`the agent's page: ${ag.why}`);
  if (opt.picture) {
    const pic = await adopt(context, opt.out, {
      name: 'dashboard',
      shows: "The run drawn from the dashboard's queries (render_dashboard.py), not Grafana itself",
      source: opt.picture,
    });
    shots.push(pic);
    report(pic);
    if (!pic.ok) failures.push(`the run picture: ${pic.why}`);
  }
  notes.push('Grafana: not captured; no Grafana image can be had without a container registry (dashboard.png draws its queries)');
  return { shots, failures, notes };
}

const phase = positionals[0];
const phases = { load: loadPhase, after: afterPhase };
if (!phases[phase]) {
  log(`usage: capture.mjs load|after ... (see the head of capture.mjs)`);
  process.exit(2);
}
fs.mkdirSync(opt.out || '.', { recursive: true });
// A hung browser must not hang the test: the load phase's own watch, plus a minute.
const limit = 1000 * (Number(opt.seconds || 0) + 60);
setTimeout(() => {
  log(`FAILED: the ${phase} phase did not finish within ${limit / 1000} s`);
  process.exit(1);
}, limit).unref();

const { context, close } = await launch(path.join(opt.out, `.chromium-${phase}`));
let result;
try {
  result = await phases[phase](context);
} finally {
  await close();
}
save(opt.out, phase, { phase, ...result });
for (const n of result.notes) log(`note: ${n}`);
if (result.failures.length) {
  for (const f of result.failures) log(`FAILED: ${f}`);
  process.exit(1);
}
