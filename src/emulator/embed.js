/*
 * persona-gate emulator: a stand-in for Persona's Embedded Flow script, for offline demos and tests.
 * It implements the part of the `Persona.Client` interface the onboarding page uses (inquiryId,
 * sessionToken, environmentId, onLoad, onReady, onComplete, onCancel, onError, open, cancel, destroy)
 * and shows a modal with the flow's steps, moving the inquiry through its statuses in the emulator.
 * Against real Persona the page loads Persona's own script instead; nothing else changes.
 */
(function () {
  'use strict';

  // The flow API lives next to this script: `<base>/persona.js` -> `<base>/inquiries/...`.
  var script = document.currentScript;
  var base = script ? script.src.replace(/persona\.js(\?.*)?$/, '') : '/__persona/';

  var STEPS = [
    { id: 'government_id', title: 'Government ID', action: 'Submit government ID' },
    { id: 'selfie', title: 'Selfie', action: 'Take selfie' }
  ];

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) { node.textContent = text; }
    return node;
  }

  function Client(options) {
    this.options = options || {};
    this.inquiryId = this.options.inquiryId;
    this.sessionToken = this.options.sessionToken || null;
    this.state = null;
    this.modal = null;
    var self = this;
    if (!this.inquiryId) {
      setTimeout(function () { self._error(400, 'invalid_config'); }, 0);
      return;
    }
    this._request('GET', '').then(function (state) {
      self.state = state;
      self._call('onLoad');
      self._call('onReady');
    }).catch(function (e) { self._error(e.status || 0, e.code || 'application_error'); });
  }

  Client.prototype._call = function (name, arg) {
    if (typeof this.options[name] === 'function') { this.options[name](arg); }
  };

  Client.prototype._error = function (status, code) {
    this._call('onError', { status: status, code: code });
  };

  Client.prototype._request = function (method, path, body) {
    var headers = { 'Content-Type': 'application/json' };
    if (this.sessionToken) { headers['Persona-Session-Token'] = this.sessionToken; }
    return fetch(base + 'inquiries/' + encodeURIComponent(this.inquiryId) + path, {
      method: method,
      headers: headers,
      body: body ? JSON.stringify(body) : undefined
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          var err = new Error(data.code || 'application_error');
          err.status = response.status;
          err.code = data.code || 'unknown';
          throw err;
        }
        return data;
      });
    });
  };

  Client.prototype.open = function () {
    if (this.modal) { this.modal.style.display = 'flex'; return; }
    var overlay = el('div', { id: 'persona-modal', role: 'dialog', 'aria-modal': 'true',
      style: 'position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;align-items:center;' +
             'justify-content:center;z-index:2147483647;font-family:system-ui,Arial,sans-serif' });
    var box = el('div', { style: 'background:#fff;border-radius:12px;width:380px;padding:28px;' +
      'box-shadow:0 10px 40px rgba(0,0,0,.3);text-align:center;position:relative' });
    var close = el('button', { id: 'persona-close', 'aria-label': 'Close',
      style: 'position:absolute;top:10px;right:14px;border:0;background:none;font-size:22px;cursor:pointer;color:#666' }, '\u00d7');
    var brand = el('div', { style: 'font-size:12px;color:#888;letter-spacing:.08em' }, 'PERSONA EMULATOR \u00b7 SANDBOX');
    var title = el('h2', { id: 'persona-step-title', style: 'margin:14px 0 6px' });
    var progress = el('ol', { id: 'persona-steps', style: 'text-align:left;color:#666;margin:12px 0 18px' });
    var submit = el('button', { id: 'persona-submit',
      style: 'background:#5a3fd6;color:#fff;border:0;border-radius:6px;padding:12px 24px;font-size:15px;cursor:pointer' });
    var toggleRow = el('label', { style: 'display:block;margin-top:20px;font-size:13px;color:#444' });
    var toggle = el('input', { id: 'persona-pass', type: 'checkbox' });
    toggle.checked = true;
    toggleRow.appendChild(toggle);
    toggleRow.appendChild(document.createTextNode(' Pass verifications'));
    var prefill = el('div', { id: 'persona-prefill', style: 'margin:0 0 14px;font-size:13px;color:#444;text-align:left' });
    var meta = el('div', { id: 'persona-meta', style: 'margin-top:14px;font-size:11px;color:#999;word-break:break-all' });
    [close, brand, title, progress, prefill, submit, toggleRow, meta].forEach(function (n) { box.appendChild(n); });
    overlay.appendChild(box);
    document.body.appendChild(overlay);
    this.modal = overlay;
    this._parts = { title: title, progress: progress, prefill: prefill, submit: submit, toggle: toggle, meta: meta };

    var self = this;
    close.addEventListener('click', function () { self.cancel(true); });
    submit.addEventListener('click', function () { self._advance(); });
    this._render();
  };

  Client.prototype._render = function () {
    var p = this._parts, state = this.state || {};
    var step = state.next_step;
    p.progress.innerHTML = '';
    STEPS.forEach(function (s) {
      var done = (step === 'selfie' && s.id === 'government_id') || step === 'success' || step === 'fail';
      var item = el('li', { 'data-step': s.id, style: s.id === step ? 'font-weight:700;color:#222' : '' },
        s.title + (done ? ' \u2713' : ''));
      p.progress.appendChild(item);
    });
    var current = STEPS.filter(function (s) { return s.id === step; })[0];
    if (current) {
      p.title.textContent = current.title;
      p.submit.textContent = current.action;
    } else {
      p.title.textContent = state.status === 'failed' || state.status === 'declined' ? 'Verification failed' : 'Verification complete';
      p.submit.textContent = 'Done';
    }
    // The fields the backend prefilled, by the template's own keys, as the user would see them.
    var fields = state.fields || {};
    var filled = Object.keys(fields).sort().filter(function (k) { return fields[k] !== null && fields[k] !== undefined; });
    p.prefill.textContent = filled.length ? 'Prefilled: ' + filled.map(function (k) { return k + ' = ' + fields[k]; }).join(', ') : '';
    p.meta.textContent = 'inquiry ' + this.inquiryId + ' \u00b7 status ' + state.status +
      ' \u00b7 session token: ' + (this.sessionToken ? 'yes' : 'no');
  };

  Client.prototype._advance = function () {
    var self = this, step = this.state && this.state.next_step;
    var current = STEPS.filter(function (s) { return s.id === step; })[0];
    if (!current) {
      this._call('onComplete', { inquiryId: this.inquiryId, status: this.state.status, fields: this.state.fields || {} });
      return;
    }
    this._parts.submit.disabled = true;
    this._request('POST', '/' + current.id.replace('_', '-'), { pass: this._parts.toggle.checked })
      .then(function (state) {
        if (state.session_token) { self.sessionToken = state.session_token; }
        self.state = state;
        self._parts.submit.disabled = false;
        self._render();
      })
      .catch(function (e) {
        self._parts.submit.disabled = false;
        self._error(e.status || 0, e.code || 'application_error');
      });
  };

  Client.prototype.cancel = function () {
    if (this.modal) { this.modal.style.display = 'none'; }
    this._call('onCancel', { inquiryId: this.inquiryId, sessionToken: this.sessionToken });
  };

  Client.prototype.destroy = function () {
    if (this.modal && this.modal.parentNode) { this.modal.parentNode.removeChild(this.modal); }
    this.modal = null;
  };

  Client.preload = function () {};

  window.Persona = { Client: Client };
})();
