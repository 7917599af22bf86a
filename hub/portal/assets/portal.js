// posture portal: keeps the remediation page current without inline script.
// It polls the JSON API (same authorisation as the page: the link token or
// the session cookie) and reloads the page when what it shows changed, so
// the server-rendered page stays the single rendering. Without JavaScript
// the Recheck form posts and the page reloads itself once.
(function () {
  'use strict';
  var card = document.getElementById('device');
  if (!card) { return; }
  var id = card.getAttribute('data-device-id');
  var token = card.getAttribute('data-token') || '';
  var shown = card.getAttribute('data-fingerprint');
  var api = '/api/v1/portal/devices/' + encodeURIComponent(id);
  var getURL = api + (token ? '?token=' + encodeURIComponent(token) : '');
  var form = document.getElementById('recheck-form');
  var button = document.getElementById('recheck');
  var note = document.getElementById('recheck-status');
  var fast = 0;
  var timer = null;

  function fingerprint(d) {
    var parts = (d.policies || []).map(function (p) {
      return (p.policyId || '') + ':' + (p.status || '') + ':' + (p.blocking ? '1' : '0');
    });
    parts.sort();
    return (d.state || '') + '|' + parts.join(',');
  }

  function schedule() {
    clearTimeout(timer);
    var wait = 15000;
    if (fast > 0) { fast -= 1; wait = 500; if (fast === 0) { done('Checked again. If something still fails, follow the steps below and press Check again.'); } }
    timer = setTimeout(poll, wait);
  }

  function done(text) {
    button.disabled = false;
    note.textContent = text;
  }

  function poll() {
    fetch(getURL, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (d && fingerprint(d) !== shown) { window.location.reload(); return; }
        schedule();
      })
      .catch(schedule);
  }

  if (form && button) {
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      button.disabled = true;
      note.textContent = 'Checking your device…';
      fetch(api + ':recheck', {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(token ? { token: token } : {})
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (b) { return { ok: r.ok, status: r.status, body: b }; });
      }).then(function (res) {
        if (res.status === 429) { done(res.body.message || 'Please wait a little before checking again.'); return; }
        if (!res.ok) { done('The check could not be started. Please try again.'); return; }
        if (!res.body.delivered) { done('Your device is not connected right now. Make sure it is on and online, then try again.'); return; }
        fast = 60; // about 30 s of quick polling
        poll();
      }).catch(function () { done('The check could not be started. Please try again.'); });
    });
  }
  schedule();
})();
