// The demo authenticator: refreshes the shown code when its 30 s step ends,
// and counts down the pending session's lifetime.
"use strict";
(function () {
  const codeEl = document.getElementById("demo-code");
  const bar = document.getElementById("code-bar");
  const expiry = document.getElementById("pending-expiry");
  let validFor = Number(bar ? bar.dataset.validFor : 0);
  let expiresIn = Number(expiry ? expiry.dataset.expiresIn : 0);

  async function refresh() {
    try {
      const r = await fetch("/api/demo/totp", { cache: "no-store", credentials: "same-origin" });
      if (!r.ok) return;
      const j = await r.json();
      codeEl.textContent = j.code;
      validFor = j.valid_for_seconds;
    } catch (_) { /* offline: keep the old code */ }
  }

  setInterval(function () {
    validFor -= 1;
    if (validFor <= 0) refresh();
    if (bar) bar.style.width = Math.max(0, (validFor / 30) * 100) + "%";
    if (expiry && expiresIn > 0) {
      expiresIn -= 1;
      expiry.textContent = expiresIn > 0 ? "in " + expiresIn + " s" : "now: log in again";
    }
  }, 1000);
  if (bar) bar.style.width = (validFor / 30) * 100 + "%";
})();
