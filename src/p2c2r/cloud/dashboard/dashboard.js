// P2C2R coordinator dashboard: one WebSocket (/live), no libraries, no reloads.
// Every name shown here comes from the network (peers name themselves): text only, never HTML.
"use strict";

(() => {
  const TOKEN_KEY = "p2c2r-admin-token";
  const FEED_LENGTH = 80;
  // Routine events in a burst share one line: "37 tasks re-routed · last: physics → alpha".
  const COALESCE = {
    rerouted: (n, e, who) => `${n} tasks re-routed · last: ${e.kind} → ${who}`,
    fallback: (n, e) => `${n} tasks computed by the coordinator · last: ${e.kind} (${e.reason})`,
    failed: (n, e) => `${n} tasks failed · last: ${e.kind} (${e.code})`,
    invalid_result: (n, e, who) => `${n} invalid results · last: ${e.kind} from ${who}`,
    quorum_disagreement: (n, e) => `${n} replica disagreements · last: ${e.kind}`,
  };
  const COALESCE_WINDOW_S = 15;
  const KIND_COLORS = ["#22d3b5", "#60a5fa", "#a78bfa", "#fbbf24", "#f472b6", "#fb923c", "#4ade80", "#e879f9"];
  const SOURCE_COLORS = { peer: "#22d3b5", cache: "#a78bfa", cloud: "#fbbf24", failed: "#f87171" };
  const SOURCE_LABELS = { peer: "peers", cache: "cache", cloud: "cloud fallback", failed: "failed" };

  const $ = (id) => document.getElementById(id);
  const state = { stats: null, admin: false, tokenOffered: false, updates: 0, seenPeers: null, kindColors: {} };

  // Admin token: taken from ?token= once, kept for this tab only, and removed from the address bar.
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token"));
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  state.tokenOffered = Boolean(token);

  // DOM helpers --------------------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (key === "class") node.className = value;
        else if (key === "title") node.title = value;
        else node.setAttribute(key, value);
      }
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function setText(id, text, flash) {
    const node = $(id);
    if (!node) return;
    const value = String(text);
    if (node.textContent !== value) {
      node.textContent = value;
      if (flash && state.updates > 1) {
        node.classList.remove("flash");
        void node.offsetWidth; // restart the animation
        node.classList.add("flash");
      }
    }
  }

  // Formatting ---------------------------------------------------------------------------------------

  const int = (n) => (n === undefined || n === null ? "—" : Number(n).toLocaleString("en-US"));

  function usd(micro) {
    if (micro === undefined || micro === null) return "—";
    const dollars = micro / 1e6;
    const places = Math.abs(dollars) >= 100 ? 2 : Math.abs(dollars) >= 1 ? 4 : 6;
    return (dollars < 0 ? "-$" : "$") + Math.abs(dollars).toFixed(places);
  }

  function rate(x) {
    if (x === undefined || x === null) return "—";
    return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
  }

  function ms(x) {
    if (x === undefined || x === null) return "—";
    if (x >= 10000) return (x / 1000).toFixed(1) + " s";
    if (x >= 1000) return (x / 1000).toFixed(2) + " s";
    return (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)) + " ms";
  }

  function duration(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
    if (m) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
    return `${s % 60}s`;
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString("en-GB", { hour12: false });
  }

  function kindColor(kind) {
    if (!(kind in state.kindColors)) {
      state.kindColors[kind] = KIND_COLORS[Object.keys(state.kindColors).length % KIND_COLORS.length];
    }
    return state.kindColors[kind];
  }

  // Summary cards ------------------------------------------------------------------------------------

  function renderCards(s) {
    const peers = s.peers || [];
    setText("peer-count", peers.length, true);
    setText("peer-slots", int(peers.reduce((a, p) => a + (p.slots || 0), 0)));
    setText("peer-busy", int(peers.reduce((a, p) => a + (p.running || 0), 0)));
    setText("gamer-count", int(s.gamers.connected), true);
    setText("gamer-known", int(s.gamers.known));
    setText("tasks-rate", rate(s.recent ? s.recent.tasks_per_s : null));
    setText("tasks-completed", int(s.tasks.completed), true);
    setText("tasks-failed", int(s.tasks.failed));
    setText("queue", int(s.tasks.queued));
    setText("in-flight", int(s.tasks.in_flight));
    setText("submitted", int(s.tasks.submitted));
    const lookups = s.cache.hits + s.cache.misses;
    setText("cache-rate", lookups ? ((100 * s.cache.hits) / lookups).toFixed(1) + "%" : "—");
    setText("cache-hits", int(s.cache.hits));
    setText("cache-entries", int(s.cache.entries));
    setText("revenue", usd(s.ledger.charged_micro_usd));
    setText("fee", usd(s.ledger.fee_micro_usd));
    setText("paid", usd(s.ledger.paid_to_peers_micro_usd));
    const ledger = $("ledger");
    if (s.ledger.balanced) {
      setText("ledger", "balanced");
      ledger.className = "value good";
    } else {
      setText("ledger", "off " + usd(s.ledger.balance_micro_usd));
      ledger.className = "value alarm";
    }
    setText("fallbacks", int(s.cloud_fallback));
    setText("rerouted", int(s.rerouted));
    setText("invalid", int(s.invalid_results));
    setText("uptime", "up " + duration(s.uptime_s));
  }

  // Tables -------------------------------------------------------------------------------------------

  function trustCell(peer) {
    if (!("trust" in peer) || peer.trust === null || peer.trust === undefined) return el("span", { class: "faint" }, "—");
    let scores = [];
    if (typeof peer.trust === "number") scores = [peer.trust];
    else if (typeof peer.trust === "object") scores = Object.values(peer.trust).filter((v) => typeof v === "number");
    if (!scores.length) return el("span", { class: "faint", title: "no verified results yet" }, "new");
    const score = scores.reduce((a, b) => a + b, 0) / scores.length;
    const fill = el("div", { class: "fill" + (score < 0.34 ? " low" : score < 0.67 ? " mid" : "") });
    fill.style.width = Math.round(Math.max(0, Math.min(1, score)) * 100) + "%";
    const detail = typeof peer.trust === "object"
      ? Object.entries(peer.trust).map(([k, v]) => `${k}: ${v}`).join("\n") : String(peer.trust);
    return el("span", { class: "trust", title: detail }, el("span", { class: "bar" }, fill),
      el("span", null, Math.round(score * 100) + "%"));
  }

  function latencyChips(latency) {
    const entries = Object.entries(latency || {});
    if (!entries.length) return el("span", { class: "faint" }, "—");
    return el("div", { class: "chips" }, ...entries.sort().map(([kind, v]) =>
      el("span", { class: "chip", title: kind }, kind.replace(/^(ai_|rt_)/, "") + " ", el("b", null, ms(v)))));
  }

  function renderPeers(s) {
    const body = $("peers").tBodies[0];
    const rows = [];
    const first = state.seenPeers === null;
    const seen = state.seenPeers || new Set();
    for (const peer of s.peers || []) {
      const status = peer.banned ? el("span", { class: "tag bad" }, "banned")
        : peer.running ? el("span", { class: "tag ok" }, "working") : el("span", { class: "tag info" }, "idle");
      const row = el("tr", { class: !first && !seen.has(peer.id) ? "new" : "" },
        el("td", { class: "name", title: peer.id }, peer.name, el("span", { class: "id" }, peer.id)),
        el("td", null, status),
        el("td", { class: "num" }, `${peer.running || 0}/${peer.slots}`),
        el("td", { class: "num" }, int(peer.tasks_done)),
        el("td", null, trustCell(peer)),
        el("td", { class: "num" }, usd(peer.earned_micro_usd)),
        el("td", { class: "wrap" }, latencyChips(peer.latency_ms)));
      rows.push(row);
      seen.add(peer.id);
    }
    const connected = new Set((s.peers || []).map((p) => p.id));
    for (const banned of s.banned_peers || []) {
      if (connected.has(banned.id)) continue;
      rows.push(el("tr", null,
        el("td", { class: "name", title: banned.id }, banned.name, el("span", { class: "id" }, banned.id)),
        el("td", null, el("span", { class: "tag bad", title: banned.reason || "" }, "banned")),
        el("td", { class: "num faint" }, "—"), el("td", { class: "num faint" }, "—"), el("td", null, ""),
        el("td", { class: "num faint" }, "—"), el("td", { class: "faint" }, banned.reason || "")));
    }
    state.seenPeers = seen;
    body.replaceChildren(...rows);
    $("peers-empty").hidden = rows.length > 0;
    $("peers-hint").textContent = `${(s.peers || []).length} connected` +
      ((s.banned_peers || []).length ? ` · ${s.banned_peers.length} banned` : "");
  }

  function renderKinds(s) {
    const kinds = (s.recent && s.recent.kinds) || {};
    const rows = Object.keys(kinds).sort().map((kind) => {
      const k = kinds[kind];
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = kindColor(kind);
      return el("tr", null,
        el("td", null, el("span", { class: "key" }, swatch, kind)),
        el("td", { class: "num" }, int(k.completed)),
        el("td", { class: "num" }, k.failed ? el("span", { class: "tag bad" }, int(k.failed)) : "0"),
        el("td", { class: "num" }, ms(k.p50_ms)),
        el("td", { class: "num" }, ms(k.p95_ms)));
    });
    $("kinds").tBodies[0].replaceChildren(...rows);
    $("kinds-empty").hidden = rows.length > 0;
  }

  function renderGamers(s) {
    const list = s.gamers.list;
    if (!state.admin || !list) {
      $("gamers-wrap").hidden = true;
      $("gamers-public").hidden = false;
      $("gamers-hint").textContent = `${int(s.gamers.connected)} connected · identities for the admin only`;
      return;
    }
    $("gamers-wrap").hidden = false;
    $("gamers-public").hidden = true;
    $("gamers-hint").textContent = `${int(s.gamers.connected)} connected · ${int(s.gamers.known)} known`;
    $("gamers").tBodies[0].replaceChildren(...list.map((g) => el("tr", null,
      el("td", { class: "name", title: g.id }, g.name, el("span", { class: "id" }, g.id)),
      el("td", null, g.connected ? el("span", { class: "tag ok" }, "online") : el("span", { class: "tag" }, "away")),
      el("td", { class: "num" }, int(g.tasks)),
      el("td", { class: "num" }, usd(g.spent_micro_usd)),
      el("td", { class: "num" }, usd(g.balance_micro_usd)))));
  }

  // Event feed ---------------------------------------------------------------------------------------

  function describe(e) {
    const who = e.name || e.peer || "a peer";
    switch (e.event) {
      case "peer_joined": return ["ok", "joined", `Peer ${who} joined`];
      case "peer_left": return ["warn", "left", `Peer ${who} left` + (e.rerouted ? ` · ${e.rerouted} task(s) re-routed` : "")];
      case "rerouted": return ["info", "re-route", `${e.kind} re-routed to ${who}`];
      case "invalid_result": return ["bad", "invalid", `Invalid ${e.kind} result from ${who}` + (e.reason ? `: ${e.reason}` : "")];
      case "cheater_banned": return ["bad", "banned", `Cheater caught: ${who} banned` + (e.reason ? ` (${e.reason})` : "")];
      case "audit_failed": return ["bad", "audit", `Audit caught a bad ${e.kind} result from ${who}`];
      case "quorum_disagreement": return ["warn", "quorum", `Replicas disagreed on a ${e.kind} task`];
      case "fallback": return ["violet", "cloud", `${e.kind} computed by the coordinator (${e.reason})`];
      case "failed": return ["bad", "failed", `${e.kind} task failed: ${e.code}`];
      case "gamer_joined": return ["", "gamer", "A gamer connected" + (e.gamer_name ? `: ${e.gamer_name}` : "")];
      case "gamer_left": return ["", "gamer", "A gamer left"];
      case "resumed": return ["info", "resume", `Resumed ${e.count} unfinished task(s) after a restart`];
      default: {
        const rest = Object.entries(e).filter(([k]) => k !== "t" && k !== "event").map(([k, v]) => `${k}=${v}`);
        return ["", String(e.event || "event").replace(/_/g, " "), rest.join(" ")];
      }
    }
  }

  function addEvent(e, fresh) {
    const [tone, label, text] = describe(e);
    const list = $("events");
    const t = e.t || Date.now() / 1000;
    const key = Object.hasOwn(COALESCE, e.event) ? e.event : null;
    const top = list.firstElementChild;
    if (key && top && top.dataset.key === key && t - Number(top.dataset.t) < COALESCE_WINDOW_S) {
      const count = Number(top.dataset.count) + 1;
      const summary = COALESCE[key](count, e, e.name || e.peer || "a peer");
      top.dataset.count = String(count);
      top.dataset.t = String(t);
      top.querySelector(".time").textContent = clock(t);
      const textNode = top.querySelector(".text");
      textNode.textContent = summary;
      textNode.title = summary;
      return;
    }
    const item = el("li", { class: fresh ? "new" : "", "data-event": e.event || "", "data-key": key || "",
      "data-t": String(t), "data-count": "1" },
      el("span", { class: "time" }, clock(t)),
      el("span", null, el("span", { class: "tag " + tone }, label)),
      el("span", { class: "text", title: text }, text));
    list.prepend(item);
    while (list.children.length > FEED_LENGTH) list.lastElementChild.remove();
    $("events-empty").hidden = true;
  }

  // Charts -------------------------------------------------------------------------------------------

  function prepare(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    return { ctx, width, height, left: 52, right: width - 12, top: 12, bottom: height - 24 };
  }

  function niceStep(max, ticks) {
    const raw = max / ticks;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * power) return m * power;
    return 10 * power;
  }

  function xAxis(g, n, bucketS) {
    const { ctx } = g;
    const span = n * bucketS;
    const labelEvery = span <= 60 ? 15 : span <= 120 ? 30 : 60;
    ctx.fillStyle = "#5b6b82";
    ctx.font = "11px 'DejaVu Sans', sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const x = (i) => g.left + ((g.right - g.left) * (i + 0.5)) / n;
    for (let i = 0; i < n; i++) {
      const ago = (n - i) * bucketS;
      if (ago % labelEvery === 0) {
        const label = ago < 60 ? `-${ago}s` : ago % 60 ? `-${Math.floor(ago / 60)}m${ago % 60}s` : `-${ago / 60}m`;
        ctx.fillText(label, x(i), g.bottom + 7);
        ctx.strokeStyle = "rgba(35,48,68,.55)";
        ctx.beginPath();
        ctx.moveTo(Math.round(x(i)) + 0.5, g.top);
        ctx.lineTo(Math.round(x(i)) + 0.5, g.bottom);
        ctx.stroke();
      }
    }
    ctx.textAlign = "right";
    ctx.fillText("now", g.right, g.bottom + 7);
    return x;
  }

  function yGrid(g, ticks, y, label) {
    const { ctx } = g;
    ctx.font = "11px 'DejaVu Sans', sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of ticks) {
      const yy = Math.round(y(t)) + 0.5;
      ctx.strokeStyle = "#233044";
      ctx.beginPath();
      ctx.moveTo(g.left, yy);
      ctx.lineTo(g.right, yy);
      ctx.stroke();
      ctx.fillStyle = "#5b6b82";
      ctx.fillText(label(t), g.left - 8, yy);
    }
  }

  function emptyNote(g, text) {
    g.ctx.fillStyle = "#5b6b82";
    g.ctx.font = "13px 'DejaVu Sans', sans-serif";
    g.ctx.textAlign = "center";
    g.ctx.textBaseline = "middle";
    g.ctx.fillText(text, (g.left + g.right) / 2, (g.top + g.bottom) / 2);
  }

  function drawLine(ctx, points, color, width) {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.lineJoin = "round";
    ctx.beginPath();
    const alone = [];
    points.forEach((p, i) => {
      if (!p) return;
      if (points[i - 1]) ctx.lineTo(p[0], p[1]); else ctx.moveTo(p[0], p[1]);
      if (!points[i - 1] && !points[i + 1]) alone.push(p);
    });
    ctx.stroke();
    ctx.lineWidth = 1;
    ctx.fillStyle = color;
    for (const p of alone) { // a lone sample has no line to be part of: show it as a dot
      ctx.beginPath();
      ctx.arc(p[0], p[1], 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  function drawThroughput(recent) {
    const g = prepare($("chart-throughput"));
    const series = recent.throughput_per_s;
    const n = series.peer.length;
    const stacked = ["peer", "cache", "cloud"];
    const totals = series.peer.map((_, i) => stacked.reduce((a, s) => a + series[s][i], 0));
    const peak = Math.max(0, ...totals, ...series.failed);
    const step = niceStep(Math.max(peak, 1) * 1.1, 4);
    const top = step * Math.ceil((Math.max(peak, 1) * 1.1) / step);
    const y = (v) => g.bottom - ((g.bottom - g.top) * v) / top;
    const ticks = [];
    for (let t = 0; t <= top + 1e-9; t += step) ticks.push(t);
    yGrid(g, ticks, y, (t) => (step < 1 ? t.toFixed(1) : String(Math.round(t))));
    const x = xAxis(g, n, recent.bucket_s);
    const base = new Array(n).fill(0);
    const { ctx } = g;
    for (const source of stacked) {
      const upper = base.map((b, i) => b + series[source][i]);
      if (upper.some((v, i) => v !== base[i])) {
        ctx.beginPath();
        upper.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
        for (let i = n - 1; i >= 0; i--) ctx.lineTo(x(i), y(base[i]));
        ctx.closePath();
        ctx.fillStyle = SOURCE_COLORS[source] + "40";
        ctx.fill();
        drawLine(ctx, upper.map((v, i) => [x(i), y(v)]), SOURCE_COLORS[source], 1.6);
      }
      upper.forEach((v, i) => (base[i] = v));
    }
    if (series.failed.some((v) => v > 0)) {
      drawLine(ctx, series.failed.map((v, i) => [x(i), y(v)]), SOURCE_COLORS.failed, 1.6);
    }
    if (peak === 0) emptyNote(g, "waiting for tasks…");
    const legend = $("legend-throughput");
    legend.replaceChildren(...[...stacked, "failed"].map((source) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = SOURCE_COLORS[source];
      const last = series[source][n - 1] || 0;
      return el("span", { class: "key" }, swatch, SOURCE_LABELS[source], el("span", { class: "figure" }, rate(last) + "/s"));
    }));
  }

  function drawLatency(recent) {
    const g = prepare($("chart-latency"));
    const series = recent.latency_mean_ms;
    const kinds = Object.keys(series).sort();
    const n = recent.throughput_per_s.peer.length;
    const values = kinds.flatMap((k) => series[k].filter((v) => v !== null && v > 0));
    let lo = values.length ? Math.pow(10, Math.floor(Math.log10(Math.min(...values)))) : 1;
    let hi = values.length ? Math.pow(10, Math.ceil(Math.log10(Math.max(...values)))) : 1000;
    if (hi <= lo) hi = lo * 10;
    if (hi / lo < 100) lo = hi / 100;
    const span = Math.log10(hi) - Math.log10(lo);
    const y = (v) => g.bottom - ((g.bottom - g.top) * (Math.log10(Math.max(v, lo)) - Math.log10(lo))) / span;
    const ticks = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
    yGrid(g, ticks, y, (t) => (t >= 1000 ? t / 1000 + " s" : t >= 1 ? t + " ms" : t + " ms"));
    const x = xAxis(g, n, recent.bucket_s);
    const { ctx } = g;
    for (const kind of kinds) {
      ctx.fillStyle = kindColor(kind);
      drawLine(ctx, series[kind].map((v, i) => (v === null ? null : [x(i), y(v)])), kindColor(kind), 1.8);
    }
    if (!values.length) emptyNote(g, "waiting for tasks…");
    const legend = $("legend-latency");
    const kindsInfo = recent.kinds || {};
    legend.replaceChildren(...kinds.map((kind) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = kindColor(kind);
      const info = kindsInfo[kind] || {};
      return el("span", { class: "key" }, swatch, kind,
        el("span", { class: "figure" }, `p50 ${ms(info.p50_ms)} · p95 ${ms(info.p95_ms)}`));
    }));
  }

  // The charts span the coordinator's life while it is younger than the history: 1, 2, 3 or 5 minutes.
  function visibleRecent(recent, uptime) {
    const total = recent.throughput_per_s.peer.length;
    const span = [60, 120, 180, 300].find((s) => s >= uptime) || total * recent.bucket_s;
    const n = Math.max(1, Math.min(total, Math.round(span / recent.bucket_s)));
    const cut = (series) => Object.fromEntries(Object.entries(series).map(([k, v]) => [k, v.slice(v.length - n)]));
    return { ...recent, throughput_per_s: cut(recent.throughput_per_s), latency_mean_ms: cut(recent.latency_mean_ms) };
  }

  function drawCharts() {
    if (!state.stats || !state.stats.recent) return;
    const recent = visibleRecent(state.stats.recent, state.stats.uptime_s);
    const span = recent.throughput_per_s.peer.length * recent.bucket_s;
    $("window-throughput").textContent = span >= 60 ? `${Math.round(span / 60)} min` : `${span} s`;
    drawThroughput(recent);
    drawLatency(recent);
  }

  // Wiring -------------------------------------------------------------------------------------------

  function render(stats) {
    state.stats = stats;
    state.updates += 1;
    document.documentElement.dataset.updates = String(state.updates);
    for (const kind of Object.keys((stats.recent && stats.recent.kinds) || {}).sort()) kindColor(kind);
    renderCards(stats);
    renderPeers(stats);
    renderKinds(stats);
    renderGamers(stats);
    drawCharts();
  }

  function setConnection(kind, text) {
    const pill = $("conn");
    pill.className = "pill " + kind;
    pill.dataset.state = text;
    $("conn-text").textContent = text;
  }

  function setView() {
    const view = $("view");
    if (state.admin) {
      view.className = "pill admin";
      view.textContent = "admin view";
      view.title = "Click to forget the admin token in this tab";
    } else if (state.tokenOffered) {
      view.className = "pill bad";
      view.textContent = "token rejected · public view";
      view.title = "Click to forget the token";
    } else {
      view.className = "pill muted";
      view.textContent = "public view";
      view.title = "";
    }
  }

  $("view").addEventListener("click", () => {
    if (!state.tokenOffered) return;
    sessionStorage.removeItem(TOKEN_KEY);
    location.replace(location.pathname);
  });

  let failures = 0;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/live" + (token ? "?token=" + encodeURIComponent(token) : ""));
    ws.addEventListener("open", () => {
      failures = 0;
      setConnection("ok", "live");
    });
    ws.addEventListener("message", (message) => {
      let data;
      try { data = JSON.parse(message.data); } catch { return; }
      if (data.type === "hello") {
        state.admin = Boolean(data.admin);
        setView();
        $("events").replaceChildren();
        for (const e of data.events || []) addEvent(e, false);
        render(data.stats);
      } else if (data.type === "snapshot") {
        render(data.stats);
      } else if (data.type === "event") {
        addEvent(data.event, true);
      }
    });
    ws.addEventListener("close", () => {
      failures += 1;
      setConnection(failures > 3 ? "bad" : "warn", failures > 3 ? "offline · retrying" : "reconnecting");
      setTimeout(connect, Math.min(5000, 500 * failures));
    });
  }

  window.addEventListener("resize", drawCharts);
  setView();
  connect();
})();
