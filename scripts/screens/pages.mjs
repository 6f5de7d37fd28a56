// The pages captured, each as a user opens it, and what each must show. Specs for shot.mjs.

const ALERT = 'WebappReplicaDown';

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function get(url) {
  const r = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: r.status, text: await r.text() };
}

/** Locust's own UI while the swarm runs: its status, users and statistics table. */
export function locust(url, users) {
  return {
    name: 'locust',
    shows: `Locust under load: the swarm running with ${users} users, its statistics per request`,
    open: (page) => page.goto(url, { waitUntil: 'load' }),
    checks: [
      { what: 'the swarm running', pattern: /Status\s+RUNNING/ },
      { what: `${users} users`, pattern: new RegExp(`Users\\s+${users}\\b`) },
      { what: 'requests counted', selector: 'tr', pattern: /Aggregated\s*[1-9]/ },
    ],
    waitMs: 15_000,
  };
}

/**
 * Prometheus' alerts page: the stock image's UI (`/alerts`), or the classic UI where only that
 * exists (Debian's 2.42 stand-in: `/alerts` answers 404).
 */
export async function prometheusAlertsUrl(base) {
  const modern = await get(`${base}/alerts`).catch(() => ({ status: 0 }));
  return modern.status === 200 ? `${base}/alerts` : `${base}/classic/alerts`;
}

/** Prometheus with the alert firing: inactive rules hidden, the firing rule unfolded. */
export function prometheus(url) {
  // Both UIs colour a firing rule's header `alert-danger` (pending: -warning, inactive: -success).
  const firing = '.alert-danger';
  return {
    name: 'prometheus-alert',
    shows: `Prometheus' alerts page with ${ALERT} firing`,
    open: async (page) => {
      await page.goto(url, { waitUntil: 'load' });
      // The classic UI's filter: hide the rules that are not active, as a user would.
      const inactive = page.locator('label:has(#inactiveAlerts)');
      if (await inactive.count()) await inactive.click().catch(() => {});
      const rule = page.locator(firing).filter({ hasText: ALERT }).first();
      if (await rule.count()) await rule.click({ timeout: 2_000 }).catch(() => {});
    },
    checks: [{ what: `${ALERT} firing`, selector: firing, pattern: new RegExp(`\\b${ALERT}\\b`) }],
    focus: `${firing}:has-text("${ALERT}")`,
    waitMs: 2_000,
  };
}

/** The stock Alertmanager has its web UI; Debian's package ships none (it says so at `/`). */
export async function alertmanagerHasUi(base) {
  const home = await get(`${base}/`).catch(() => ({ text: '' }));
  return !/does\s+not\s+include\s+a\s+web\s+application/.test(home.text);
}

/**
 * Alertmanager holding the alert, routed to the agent: its UI, or, where there is none, its own
 * API's answer for the alert as the browser shows it.
 */
export function alertmanager(base, hasUi) {
  if (hasUi) {
    return {
      name: 'alertmanager-alert',
      shows: `Alertmanager's UI with ${ALERT} active`,
      open: (page) => page.goto(`${base}/#/alerts`, { waitUntil: 'load' }),
      checks: [{ what: `${ALERT} active`, pattern: new RegExp(`\\b${ALERT}\\b`) }],
      waitMs: 4_000,
    };
  }
  const url = `${base}/api/v2/alerts?active=true&filter=${encodeURIComponent(`alertname="${ALERT}"`)}`;
  return {
    name: 'alertmanager-alert',
    shows: `Alertmanager's API (${ALERT} active, routed to the agent; Debian's Alertmanager has no web UI)`,
    open: async (page) => {
      await page.goto(url, { waitUntil: 'load' });
      // Chromium's JSON viewer: its "Pretty-print" box (top left, out of Playwright's reach in
      // the viewer's own shadow root) ticked as a user would, unless it is ticked already.
      const pretty = () => page.evaluate(() => /\n\s+"/.test(document.body.innerText));
      if (!(await pretty())) await page.mouse.click(104, 9);
    },
    checks: [
      { what: `${ALERT} in Alertmanager`, pattern: new RegExp(`"alertname":\\s*"${ALERT}"`) },
      { what: 'the alert active', pattern: /"state":\s*"active"/ },
      { what: 'routed to the agent', pattern: /"name":\s*"webhook-receiver"/ },
    ],
    // The API answers at once; a reload sees an alert that arrived a moment after it fired.
    reload: true,
    waitMs: 3_000,
  };
}

/**
 * The agent's own page after the run, logged in with the run's token as a user would (the form
 * posts to /login, which sets the cookie): an incident healed by `decider` must be in view.
 */
export function agent(base, token, decider) {
  return {
    name: 'agent',
    shows: `The agent's page: replicas, and incidents healed by the ${decider}`,
    open: async (page) => {
      await page.goto(`${base}/`, { waitUntil: 'load' });
      const form = page.locator('form[action="/login"] input[name="token"]');
      if (await form.count()) {
        if (!token) throw new Error('the agent asks for its token and WEBHOOK_TOKEN is empty');
        await form.fill(token);
        await Promise.all([page.waitForURL(`${base}/`), page.locator('form[action="/login"] button[type="submit"]').click()]);
      }
    },
    // The healed incident is what the picture is about: scrolled into view, since newer
    // incidents (an alert that came after the heal, answered `no_action`, opened) and open
    // escalations can push it below the fold.
    focus: {
      selector: 'details > summary:has(.badge.healed)',
      pattern: new RegExp(`\\bhealed\\b.*\\bby ${escape(decider)}\\b`),
    },
    checks: [
      { what: 'logged in (no login form)', pattern: /\bReplicas\b[\s\S]*\bRecent incidents\b/ },
      { what: `the agent deciding with the ${decider}`, pattern: new RegExp(`decides with ${escape(decider)}\\b`) },
      {
        what: `an incident healed by the ${decider}`,
        selector: 'details > summary:has(.badge.healed)',
        pattern: new RegExp(`\\bhealed\\b.*\\bby ${escape(decider)}\\b`),
      },
    ],
    waitMs: 10_000,
  };
}

/** The app as users get it: nginx passes `GET /` to a replica, which names itself. */
export function nginx(url) {
  return {
    name: 'nginx-webapp',
    shows: "The app through nginx: a replica's answer to GET /, naming the replica",
    // The page is two lines: a short window, or it is all white space.
    viewport: { width: 800, height: 140 },
    open: (page) => page.goto(`${url}/`, { waitUntil: 'load' }),
    checks: [
      // The replica names itself by its hostname (the container's short id).
      { what: 'a replica answered', selector: 'h1', pattern: /^Hello from \S+$/ },
      { what: 'the leak it reports', pattern: /leaks \d+ bytes per request and has leaked \d+ bytes so far/ },
    ],
    // A replica may be down for a moment under load: nginx then answers 502; open it again.
    reload: true,
    waitMs: 10_000,
  };
}
