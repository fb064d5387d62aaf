// sublog status page: live updates and the topology drawing. The pages
// work without this script; it only refreshes the #content part of the
// page when the instance reports a change (server-sent events), and draws
// the topology from the control API's JSON.
(function () {
  'use strict';
  var live = document.getElementById('live');
  function say(msg) { if (live) { live.textContent = msg; } }

  // Refresh: fetch this page's content part and swap it in, one at a time.
  var busy = false, again = false, timer = null;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var u = new URL(window.location.href);
    u.searchParams.set('part', 'content');
    fetch(u.toString(), { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
      .then(function (r) { return r.text().then(function (t) { return { ok: r.ok, status: r.status, text: t }; }); })
      .then(function (r) {
        if (r.status === 401) {
          say('The instance no longer knows this page\'s token (it restarted?): open the link \'sublog ui\' prints.');
          return;
        }
        var c = document.getElementById('content');
        if (c) { c.innerHTML = r.text; }
        draw();
        whileMoving();
        say((r.ok ? 'Updated ' : 'Update answered ' + r.status + ' at ') + new Date().toISOString().replace(/\.\d+Z$/, 'Z') + ' (live).');
        document.body.setAttribute('data-updated', String(Date.now()));
      })
      .catch(function (e) { say('Update failed: ' + e.message); })
      .then(function () {
        busy = false;
        if (again) { again = false; schedule(); }
      });
  }
  function schedule() {
    if (timer) { return; }
    timer = setTimeout(function () { timer = null; refresh(); }, 150);
  }

  // Sync progress: while rounds move cards the counts change with no event
  // to say so (the sending side stores nothing, a round's end is no
  // change of the store), so the page refreshes every second until
  // nothing is to come or to send.
  var moving = null;
  function whileMoving() {
    if (moving) { return; }
    var busyNow = Array.prototype.some.call(document.querySelectorAll('[data-cards-to-go], [data-session-to-send]'), function (e) {
      return Number(e.getAttribute('data-cards-to-go') || e.getAttribute('data-session-to-send')) > 0;
    });
    if (busyNow) { moving = setTimeout(function () { moving = null; refresh(); }, 1000); }
  }

  if (window.EventSource) {
    var es = new EventSource('/api/v1/events');
    es.addEventListener('status', function () {
      say('Live: the page updates when the instance changes.');
      document.body.setAttribute('data-live', 'yes');
    });
    ['heads', 'peer', 'session', 'dropped'].forEach(function (t) { es.addEventListener(t, schedule); });
    es.onerror = function () { say('Live updates interrupted; reconnecting.'); document.body.setAttribute('data-live', 'no'); };
  }

  // Topology: this instance in the middle, its peers on a circle, a line
  // per live link.
  var SVG = 'http://www.w3.org/2000/svg';
  function el(name, attrs, text) {
    var e = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function fmtBytes(n) {
    var u = ['B', 'KiB', 'MiB', 'GiB'], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
  }
  function draw() {
    var g = document.getElementById('graph');
    if (!g) { return; }
    fetch(g.getAttribute('data-src'), { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) { throw new Error('topology: ' + r.status); } return r.json(); })
      .then(function (t) {
        var W = 640, H = 420, cx = W / 2, cy = H / 2, R = 150;
        var peers = t.nodes.filter(function (n) { return n.role !== 'self'; });
        var pos = {};
        pos[t.self] = [cx, cy];
        peers.forEach(function (n, i) {
          var a = 2 * Math.PI * i / Math.max(peers.length, 1) - Math.PI / 2;
          pos[n.id] = [cx + R * Math.cos(a), cy + R * Math.sin(a)];
        });
        var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', 'aria-labelledby': 'topo-title topo-desc' });
        svg.appendChild(el('title', { id: 'topo-title' }, 'Topology of ' + t.self.slice(0, 10)));
        svg.appendChild(el('desc', { id: 'topo-desc' }, t.nodes.length + ' identities, ' + t.links.length + ' live links'));
        t.links.forEach(function (l) {
          var a = pos[l.from], b = pos[l.to];
          if (!a || !b) { return; }
          var line = el('line', { x1: a[0], y1: a[1], x2: b[0], y2: b[1], 'data-link': l.to });
          line.appendChild(el('title', {}, 'link to ' + l.to.slice(0, 10) + ': last sync ' + l.last_round + ', in ' + fmtBytes(l.bytes_in) + ', out ' + fmtBytes(l.bytes_out)));
          svg.appendChild(line);
          svg.appendChild(el('text', { x: (a[0] + b[0]) / 2 + 6, y: (a[1] + b[1]) / 2 - 6 }, fmtBytes(l.bytes_in) + ' in / ' + fmtBytes(l.bytes_out) + ' out'));
        });
        t.nodes.forEach(function (n) {
          var p = pos[n.id];
          if (!p) { return; }
          var cls = n.role === 'self' ? 'node-self' : (n.live ? 'node-live' : 'node-down');
          var c = el('circle', { cx: p[0], cy: p[1], r: n.role === 'self' ? 16 : 12, 'class': cls, 'data-node': n.id });
          c.appendChild(el('title', {}, n.id + (n.role === 'self' ? ' (this instance)' : (n.live ? ' (live)' : ' (no live session)'))));
          svg.appendChild(c);
          svg.appendChild(el('text', { x: p[0] + 18, y: p[1] + 4 }, n.id.slice(0, 10) + (n.role === 'self' ? ' (this instance)' : '')));
        });
        g.textContent = '';
        g.appendChild(svg);
      })
      .catch(function (e) { say('Drawing the topology failed: ' + e.message); });
  }
  draw();
  whileMoving();
})();
