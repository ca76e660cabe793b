// Portcullis dashboard: read-only views of the admin API. No framework, no build step, nothing
// loaded from outside the node. Every value from the API is written with textContent, never
// parsed as HTML.
"use strict";

(function () {
  const KEY = "portcullis.token";
  const REFRESH_MS = 10000;
  const FEED_ROWS = 50;
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2b6cb0", "#c53030", "#2f855a", "#b7791f", "#6b46c1", "#00838f", "#d53f8c", "#4a5568",
    "#dd6b20", "#38a169", "#805ad5", "#3182ce", "#e53e3e", "#718096", "#975a16", "#285e61", "#702459"];

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(KEY) || "";
  let timer = null;
  let stream = null; // AbortController of the event stream
  let summary = null; // last /events/summary, updated live by the stream
  const RECORD_ROWS = 20;

  // colour is a rule's colour: a hash of its name (FNV-1a), so the same in every session and
  // whatever rules were seen before it.
  function colour(rule) {
    let h = 0x811c9dc5;
    for (let i = 0; i < rule.length; i++) {
      h ^= rule.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return PALETTE[h % PALETTE.length];
  }

  class AuthError extends Error {}

  async function api(path) {
    const res = await fetch("/api/v1" + path, {
      headers: { "Authorization": "Bearer " + token, "Accept": "application/json" },
      cache: "no-store",
    });
    if (res.status === 401 || res.status === 429) {
      let msg = "token refused";
      try { msg = (await res.json()).message || msg; } catch (e) { /* keep the default */ }
      throw new AuthError(msg);
    }
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }

  // health answers 503 with the report when the node is unavailable.
  async function fetchHealth() {
    const res = await fetch("/api/v1/health", { headers: { "Authorization": "Bearer " + token }, cache: "no-store" });
    if (res.status === 401 || res.status === 429) throw new AuthError("token refused");
    return res.json();
  }

  // ---- formatting -------------------------------------------------------------------------
  function ago(t) {
    if (!t) return "";
    const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
    if (s < 0) return "in " + dur(-s);
    return dur(s) + " ago";
  }
  function until(t) {
    const s = Math.round((new Date(t).getTime() - Date.now()) / 1000);
    return s <= 0 ? "expired" : "in " + dur(s);
  }
  function dur(s) {
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  function clock(t) {
    const d = new Date(t);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function host(src) { // "ip:port" or "[v6]:port" → ip
    if (!src) return "";
    const m = /^\[([^\]]+)\]:\d+$/.exec(src) || /^([^:]+):\d+$/.exec(src);
    return m ? m[1] : src;
  }

  // ---- tables -----------------------------------------------------------------------------
  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    return td;
  }
  function fill(tableId, rows, empty) {
    const body = $(tableId).tBodies[0];
    const n = $(tableId).tHead.rows[0].cells.length;
    body.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = cell(empty, "empty");
      td.colSpan = n;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    for (const cells of rows) {
      const tr = document.createElement("tr");
      for (const c of cells) tr.appendChild(c instanceof Node ? c : cell(c));
      body.appendChild(tr);
    }
  }

  function renderRegistrations(rooms, bindings) {
    const byRoom = new Map();
    for (const b of bindings) {
      if (!byRoom.has(b.room)) byRoom.set(b.room, []);
      byRoom.get(b.room).push(b);
    }
    const rows = [];
    for (const r of rooms) {
      const bs = byRoom.get(r.name) || [];
      if (bs.length === 0) {
        rows.push([cell(r.name), cell("not registered", "bad"), "", "", "", "", ""]);
        continue;
      }
      for (const b of bs) {
        rows.push([cell(r.name), cell("registered", "ok"), host(b.source), b.transport, cell(b.user_agent || "", "wrap"),
          b.node, until(b.expires)]);
      }
    }
    fill("registrations", rows, "No rooms configured");
    $("n-rooms").textContent = rooms.length;
    $("n-registered").textContent = rooms.filter((r) => byRoom.has(r.name)).length + " / " + rooms.length;
  }

  // mediaHealth sums the per-stream counters of a call's detail into one line and a class.
  function mediaHealth(detail) {
    const streams = Array.isArray(detail && detail.media) ? detail.media : [];
    if (streams.length === 0) return ["—", ""];
    let packets = 0, lost = 0, jitter = 0;
    const kinds = [];
    for (const s of streams) {
      kinds.push(s.media || "stream");
      for (const dir of [s.a_to_b, s.b_to_a]) {
        if (!dir) continue;
        packets += dir.packets || 0;
        lost += dir.lost || 0;
        jitter = Math.max(jitter, dir.jitter_ms || 0);
      }
    }
    const loss = packets + lost > 0 ? (100 * lost) / (packets + lost) : 0;
    const text = kinds.join("+") + ": " + packets + " pkts, " + loss.toFixed(1) + "% loss, " + jitter.toFixed(0) + " ms jitter";
    let cls = "ok";
    if (packets === 0 && detail.state === "answered") cls = "bad";
    else if (loss >= 5 || jitter >= 60) cls = "bad";
    else if (loss >= 1 || jitter >= 30) cls = "warn";
    return [text, cls];
  }

  async function renderCalls(calls) {
    const shown = calls.slice(0, 20);
    const details = await Promise.all(shown.map((c) => api("/calls/" + encodeURIComponent(c.id)).catch(() => c)));
    const rows = shown.map((c, i) => {
      const [text, cls] = mediaHealth(details[i]);
      const since = c.answered || c.started;
      const secs = since ? Math.max(0, Math.round((Date.now() - new Date(since).getTime()) / 1000)) : null;
      return [c.room, c.direction, cell(c.from, "wrap"), c.state, secs == null ? "" : dur(secs), cell(text, cls + " wrap")];
    });
    fill("calls", rows, "No calls right now");
    $("n-calls").textContent = calls.length;
  }

  function renderSources(s) {
    fill("sources", s.top_sources.map((x) => [x.source, x.count, x.last_rule, ago(x.last)]), "No refusals in 24 h");
  }

  function renderBans(bans) {
    fill("bans", bans.map((b) => [b.prefix, b.rule, cell(b.reason, "wrap"), b.strikes, until(b.until)]), "No bans in force");
    $("n-bans").textContent = bans.length;
  }

  function renderMembers(members, leader) {
    fill("members", members.map((m) => [m.id, m.address, m.id === leader ? "leader" : m.state,
      cell(m.healthy ? "healthy" : "unreachable", m.healthy ? "ok" : "bad")]), "No members");
    const healthy = members.filter((m) => m.healthy).length;
    $("n-members").textContent = healthy + " / " + members.length;
  }

  // renderDown shows that the node does not answer: no "healthy" pill from the last good refresh.
  function renderDown(why) {
    const el = $("health");
    el.textContent = "unreachable";
    el.className = "pill bad";
    el.title = why;
  }

  function renderRecords(records) {
    fill("records", records.map((r) => [ago(r.ended), r.room, r.direction, cell(r.from, "wrap"), cell(r.to, "wrap"),
      r.duration ? dur(Math.round(r.duration / 1e9)) : "not answered", r.status || "", r.end_reason]), "No calls yet");
  }

  function renderHealth(h) {
    const el = $("health");
    el.textContent = h.status === "ok" ? "healthy" : "unavailable";
    el.className = "pill " + (h.status === "ok" ? "ok" : "bad");
    el.title = Object.entries(h.checks || {}).map(([k, v]) => k + ": " + v).join("\n");
    $("node").textContent = h.node ? "node " + h.node : "";
  }

  // ---- chart ------------------------------------------------------------------------------
  function svg(tag, attrs, text) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    if (text != null) el.textContent = text;
    return el;
  }

  function renderChart() {
    const s = summary;
    const W = Math.max(320, $("chart").clientWidth || 960), H = 240, L = 36, B = 22, T = 8;
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "Refusals per hour by rule" });
    const totals = s.hourly.map((h) => Object.values(h.counts).reduce((a, b) => a + b, 0));
    const max = Math.max(1, ...totals);
    const step = niceStep(max);
    const top = Math.ceil(max / step) * step;
    const y = (v) => H - B - ((H - B - T) * v) / top;
    for (let v = 0; v <= top; v += step) {
      root.appendChild(svg("line", { x1: L, x2: W, y1: y(v), y2: y(v), class: "axis" }));
      root.appendChild(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, v));
    }
    const slot = (W - L) / s.hourly.length;
    const bw = Math.max(2, slot * 0.72);
    s.hourly.forEach((h, i) => {
      const x = L + i * slot + (slot - bw) / 2;
      let acc = 0;
      for (const rule of s.rules) {
        const n = h.counts[rule] || 0;
        if (!n) continue;
        const r = svg("rect", { x: x.toFixed(1), y: y(acc + n).toFixed(1), width: bw.toFixed(1),
          height: (y(acc) - y(acc + n)).toFixed(1), fill: colour(rule), "data-rule": rule, "data-hour": h.hour, "data-count": n });
        r.appendChild(svg("title", {}, rule + ": " + n + " at " + new Date(h.hour).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
        root.appendChild(r);
        acc += n;
      }
      const d = new Date(h.hour);
      if (d.getHours() % 3 === 0) {
        root.appendChild(svg("text", { x: (x + bw / 2).toFixed(1), y: H - 6, "text-anchor": "middle" },
          String(d.getHours()).padStart(2, "0") + ":00"));
      }
    });
    $("chart").replaceChildren(root);

    const legend = $("legend");
    legend.replaceChildren();
    const totalsByRule = new Map();
    for (const h of s.hourly) for (const [k, v] of Object.entries(h.counts)) totalsByRule.set(k, (totalsByRule.get(k) || 0) + v);
    for (const rule of s.rules) {
      const li = document.createElement("li");
      li.dataset.rule = rule;
      const sw = svg("svg", { viewBox: "0 0 12 12" });
      sw.appendChild(svg("rect", { width: 12, height: 12, rx: 2, fill: colour(rule) }));
      li.appendChild(sw);
      li.appendChild(document.createTextNode(rule + " (" + (totalsByRule.get(rule) || 0) + ")"));
      legend.appendChild(li);
    }
    if (s.rules.length === 0) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No refusals in the last 24 hours.";
      legend.appendChild(li);
    }
    $("n-refusals").textContent = s.total;
  }

  function niceStep(max) {
    const raw = max / 4;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return Math.max(1, m * mag);
    return Math.max(1, 10 * mag);
  }

  // addRefusal counts a live event into the chart and the feed without waiting for a refresh.
  function addRefusal(ev) {
    if (summary) {
      const hour = new Date(ev.time);
      hour.setMinutes(0, 0, 0);
      let b = summary.hourly.find((h) => new Date(h.hour).getTime() === hour.getTime());
      if (!b) {
        summary.hourly.push({ hour: hour.toISOString(), counts: {} });
        summary.hourly.shift();
        b = summary.hourly[summary.hourly.length - 1];
      }
      b.counts[ev.rule] = (b.counts[ev.rule] || 0) + 1;
      if (!summary.rules.includes(ev.rule)) summary.rules.push(ev.rule);
      summary.total++;
      renderChart();
    }
    const body = $("feed").tBodies[0];
    if (body.querySelector("td.empty")) body.replaceChildren();
    const tr = document.createElement("tr");
    tr.className = "fresh";
    for (const c of [clock(ev.time), host(ev.source), ev.rule]) tr.appendChild(cell(c));
    tr.appendChild(cell(ev.reason, "wrap"));
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > FEED_ROWS) body.deleteRow(-1);
  }

  function renderFeed(events) {
    fill("feed", events.map((e) => [clock(e.time), host(e.source), e.rule, cell(e.reason, "wrap")]), "No refusals yet");
  }

  // ---- live stream (fetch, because EventSource cannot send the Authorization header) --------
  async function follow() {
    const ctl = new AbortController();
    stream = ctl;
    let wait = 1000;
    while (!ctl.signal.aborted) {
      try {
        const res = await fetch("/api/v1/events/stream", { headers: { "Authorization": "Bearer " + token }, signal: ctl.signal });
        if (res.status === 401) throw new AuthError("token refused");
        if (!res.ok || !res.body) throw new Error("stream: HTTP " + res.status);
        setLive(true);
        wait = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = "message", data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) event = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
            }
            if (event === "refusal" && data) addRefusal(JSON.parse(data));
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
        if (e instanceof AuthError) { logout(e.message); return; }
      }
      setLive(false);
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 30000);
    }
  }

  function setLive(on) {
    const el = $("live");
    el.textContent = on ? "live" : "reconnecting";
    el.className = "pill " + (on ? "ok" : "warn");
  }

  // ---- refresh cycle ----------------------------------------------------------------------
  async function refresh() {
    try {
      const [health, rooms, regs, calls, sum, bans, members, leader, events, records] = await Promise.all([
        fetchHealth(),
        api("/rooms"), api("/registrations"), api("/calls"), api("/events/summary?hours=24"),
        api("/guard/bans"), api("/cluster/members"), api("/cluster/leader").catch(() => ({})), api("/events?limit=" + FEED_ROWS),
        api("/records?order=newest&limit=" + RECORD_ROWS),
      ]);
      renderHealth(health);
      renderRegistrations(rooms.items, regs.items);
      summary = sum;
      renderChart();
      renderSources(sum);
      renderBans(bans.items);
      renderMembers(members.items, leader.id);
      renderFeed(events.items);
      renderRecords(records.items);
      await renderCalls(calls.items);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.loaded = "true";
      return true;
    } catch (e) {
      if (e instanceof AuthError) { logout(e.message); return false; }
      $("updated").textContent = "update failed: " + e.message;
      renderDown(e.message);
      return true;
    }
  }

  async function start() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    if (!(await refresh())) return;
    timer = setInterval(refresh, REFRESH_MS);
    follow();
  }

  function logout(reason) {
    sessionStorage.removeItem(KEY);
    token = "";
    if (timer) clearInterval(timer);
    timer = null;
    if (stream) stream.abort();
    stream = null;
    delete document.body.dataset.loaded;
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("live").textContent = "";
    $("login-error").textContent = reason || "";
    $("token").value = "";
  }

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(KEY, token);
    $("login-error").textContent = "";
    start();
  });
  $("logout").addEventListener("click", () => logout(""));
  window.addEventListener("resize", () => { if (summary && token) renderChart(); });

  if (token) start();
})();
