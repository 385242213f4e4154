/* Progressive enhancement for the portal. Every page works without it; with it:
   the idle sign-out timer, the request form's steps and live checks, and uploads
   with a progress bar and the scanner's verdict per file. No inline script (CSP). */
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var body = document.body;
  var csrf = body.getAttribute("data-csrf");

  function post(url, data, onDone) {
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-Requested-With", "portal");
    if (csrf) xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.onload = function () {
      var json = null;
      try { json = JSON.parse(xhr.responseText); } catch (e) { json = null; }
      if (xhr.status === 401) { leave(); return; }
      onDone(xhr.status, json);
    };
    xhr.onerror = function () { onDone(0, null); };
    xhr.send(data);
    return xhr;
  }

  /* ---- Idle sign-out: the server ends the session after the idle timeout; the page follows. ---- */
  var idleSeconds = parseInt(body.getAttribute("data-idle-timeout") || "0", 10);
  var lastContact = Date.now(), activeSinceContact = false, warned = false;
  var warning = document.getElementById("idle-warning");
  function leave() {
    // Hide patient information at once, then go to the signed-out page.
    var main = document.getElementById("main");
    if (main) main.innerHTML = "";
    window.location.assign(body.getAttribute("data-signed-out"));
  }
  function keepalive() {
    lastContact = Date.now(); activeSinceContact = false; warned = false;
    if (warning) warning.hidden = true;
    post(body.getAttribute("data-keepalive"), null, function () {});
  }
  var asking = false;
  function askBeforeLeaving() {
    // Another tab may have kept the session alive: ask the server (asking is not activity).
    asking = true;
    var xhr = new XMLHttpRequest();
    xhr.open("GET", body.getAttribute("data-session-status"));
    xhr.setRequestHeader("X-Requested-With", "portal");
    xhr.onload = function () {
      asking = false;
      var json = null;
      try { json = JSON.parse(xhr.responseText); } catch (e) { json = null; }
      if (xhr.status === 200 && json && json.idle_remaining > 2) {
        lastContact = Date.now() - (idleSeconds - json.idle_remaining) * 1000;
        warned = false; if (warning) warning.hidden = true;
      } else { leave(); }
    };
    xhr.onerror = function () { asking = false; leave(); };
    xhr.send();
  }
  if (idleSeconds > 0) {
    var warnBefore = Math.min(60, Math.floor(idleSeconds / 2));
    ["keydown", "pointerdown", "input"].forEach(function (name) {
      document.addEventListener(name, function () { activeSinceContact = true; }, true);
    });
    if (warning) document.getElementById("idle-stay").addEventListener("click", keepalive);
    setInterval(function () {
      var idle = (Date.now() - lastContact) / 1000;
      // Someone typing or clicking is not idle: tell the server, at most once a minute.
      if (activeSinceContact && idle > Math.min(60, idleSeconds / 3) && !warned) { keepalive(); return; }
      if (idle >= idleSeconds + 1 && !asking) { askBeforeLeaving(); return; }
      if (idle >= idleSeconds - warnBefore && warning && !warned) {
        warned = true; warning.hidden = false; document.getElementById("idle-stay").focus();
      }
    }, 1000);
  }

  /* ---- Error summaries take focus so screen-reader and keyboard users land on them. ---- */
  var summary = document.querySelector("[data-focus-on-load]");
  if (summary) summary.focus();

  /* ---- A secret shown once (API key, webhook secret) gets a Copy button. ---- */
  document.querySelectorAll("input.secret").forEach(function (input) {
    var copy = document.createElement("button");
    copy.type = "button"; copy.className = "button"; copy.textContent = "Copy";
    copy.addEventListener("click", function () {
      input.select();
      if (navigator.clipboard) navigator.clipboard.writeText(input.value);
      copy.textContent = "Copied";
    });
    input.insertAdjacentElement("afterend", copy);
  });

  /* ---- Confirmations for irreversible buttons. ---- */
  document.querySelectorAll("[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  /* ---- Messages beside fields (live checks). ---- */
  function fieldId(path) { return "f-" + path.replace(/\./g, "-"); }
  function showMessages(form, errors, deficiencies) {
    form.querySelectorAll("[data-messages-for]").forEach(function (box) { box.innerHTML = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    function add(item, cls, prefix) {
      var box = item.field && form.querySelector('[data-messages-for="' + item.field + '"]');
      if (!box) return;
      var p = document.createElement("p");
      p.className = cls; p.setAttribute("data-code", item.code || "");
      var hidden = document.createElement("span"); hidden.className = "visually-hidden"; hidden.textContent = prefix;
      p.appendChild(hidden); p.appendChild(document.createTextNode(" " + item.message));
      box.appendChild(p);
      var input = document.getElementById(fieldId(item.field));
      if (input) input.setAttribute("aria-invalid", "true");
    }
    (errors || []).forEach(function (e) { add(e, "field-error", "Error:"); });
    (deficiencies || []).forEach(function (d) { add(d, "field-deficiency", "Problem:"); });
  }

  /* ---- The request form: one step at a time, checked as you go. ---- */
  var requestForm = document.querySelector("form[data-request-form]");
  if (requestForm) {
    var steps = Array.prototype.slice.call(requestForm.querySelectorAll("fieldset.step"));
    var indicator = document.querySelectorAll(".steps li");
    var current = 0;
    var firstProblem = requestForm.querySelector("[aria-invalid=true]");
    if (firstProblem) {
      var owner = firstProblem.closest("fieldset.step");
      current = Math.max(0, steps.indexOf(owner));
    } else if (window.location.hash) {
      var target = document.querySelector(window.location.hash.replace(/[^#\w-]/g, ""));
      if (target && target.closest("fieldset.step")) current = steps.indexOf(target.closest("fieldset.step"));
    }
    function show(index, focus) {
      current = index;
      steps.forEach(function (step, i) {
        if (i === index) step.removeAttribute("data-hidden"); else step.setAttribute("data-hidden", "");
      });
      indicator.forEach(function (li, i) {
        if (i === index) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
      });
      if (focus) { var legend = steps[index].querySelector("legend"); steps[index].setAttribute("tabindex", "-1"); steps[index].focus(); if (legend) legend.scrollIntoView(); }
    }
    function check(then) {
      post(requestForm.getAttribute("data-validate"), new FormData(requestForm), function (status, json) {
        if (status === 200 && json) showMessages(requestForm, json.errors, json.deficiencies);
        if (then) then(status, json);
      });
    }
    steps.forEach(function (step, i) {
      var nav = document.createElement("div"); nav.className = "actions";
      if (i > 0) {
        var back = document.createElement("button"); back.type = "button"; back.className = "button"; back.textContent = "Back";
        back.addEventListener("click", function () { show(i - 1, true); }); nav.appendChild(back);
      }
      if (i < steps.length - 1) {
        var next = document.createElement("button"); next.type = "button"; next.className = "button primary"; next.textContent = "Next";
        next.setAttribute("data-next", "");
        next.addEventListener("click", function () { check(); show(i + 1, true); }); nav.appendChild(next);
      }
      step.appendChild(nav);
    });
    var submitRow = requestForm.querySelector("[data-final-actions]");
    if (submitRow) steps[steps.length - 1].appendChild(submitRow);
    show(current, false);
    var timer = null;
    requestForm.addEventListener("change", function () { clearTimeout(timer); timer = setTimeout(check, 250); });
    // Picking "another location" (as the facility, or among the others ticked) asks for the practice's name and
    // address; the chosen facility is not offered again among the others.
    function togglePractice() {
      var chosen = requestForm.querySelector('input[name="facility"]:checked');
      var needed = Array.prototype.some.call(
        requestForm.querySelectorAll('input[name="facility"]:checked, input[name="also_facilities"]:checked'),
        function (box) { return box.getAttribute("data-requires-practice") === "true" && !box.disabled; });
      var practice = document.getElementById("practice-fields");
      if (practice) practice.hidden = !needed;
      requestForm.querySelectorAll('input[name="also_facilities"]').forEach(function (box) {
        var same = chosen && box.value === chosen.value;
        box.disabled = same;
        if (same) box.checked = false;
      });
    }
    requestForm.querySelectorAll('input[name="facility"], input[name="also_facilities"]').forEach(function (r) {
      r.addEventListener("change", togglePractice);
    });
    togglePractice();
  }

  /* ---- Uploads: drag and drop or choose; one XHR per file with its progress and verdict. ---- */
  var uploader = document.querySelector("[data-uploader]");
  if (uploader) {
    var zone = uploader.querySelector(".dropzone");
    var input = uploader.querySelector('input[type="file"]');
    var kind = uploader.querySelector('select[name="kind"]');
    var list = uploader.querySelector(".uploads");
    var url = uploader.getAttribute("data-upload-url");
    var pending = 0, anyStored = false;
    function uuid() {
      if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
      return String(Date.now()) + Math.random().toString(16).slice(2);
    }
    function refreshSections() {
      // Re-read this page and swap in the sections an upload changes (documents, checks, actions).
      var xhr = new XMLHttpRequest();
      xhr.open("GET", window.location.pathname);
      xhr.onload = function () {
        if (xhr.status !== 200) return;
        var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
        document.querySelectorAll("[data-refresh]").forEach(function (section) {
          var fresh = doc.getElementById(section.id);
          if (fresh) section.replaceWith(fresh);
        });
      };
      xhr.send();
    }
    function send(file) {
      var item = document.createElement("li");
      item.className = "upload";
      var name = document.createElement("div"); name.className = "upload-name"; name.textContent = file.name;
      // The value lives in the attribute (not only the property) so assistive tech and observers see each step.
      var bar = document.createElement("progress"); bar.setAttribute("max", "100"); bar.setAttribute("value", "0");
      bar.setAttribute("aria-label", "Upload progress for " + file.name);
      var state = document.createElement("div"); state.className = "upload-result"; state.setAttribute("role", "status");
      state.textContent = "Uploading…";
      item.appendChild(name); item.appendChild(bar); item.appendChild(state); list.appendChild(item);
      var form = new FormData();
      form.append("kind", kind.value);
      form.append("file", file, file.name);
      pending += 1;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-Requested-With", "portal");
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      // A retry of the same file after a dropped connection is answered once, not stored twice.
      xhr.setRequestHeader("Idempotency-Key", uuid());
      xhr.upload.onprogress = function (event) {
        if (event.lengthComputable) {
          var percent = Math.round(event.loaded * 100 / event.total);
          bar.setAttribute("value", String(percent));
          if (percent >= 100) state.textContent = "Uploaded; scanning for viruses…";
        }
      };
      xhr.onload = function () {
        var json = null;
        try { json = JSON.parse(xhr.responseText); } catch (e) { json = null; }
        pending -= 1;
        if (xhr.status === 401) { leave(); return; }
        if (xhr.status === 201 && json) {
          bar.setAttribute("value", "100"); anyStored = true;
          item.setAttribute("data-result", "clean");
          state.className = "upload-result ok";
          state.textContent = json.items ?  // a request group's upload: one document, added to each open request
            "Scanned: no viruses found. Added to " + json.items.length + (json.items.length === 1 ? " request." : " requests.") :
            "Scanned: no viruses found. Stored as " + (json.pages ? json.pages + "-page " : "") + "document.";
        } else {
          item.setAttribute("data-result", (json && json.code) || "error");
          state.className = "upload-result bad";
          state.textContent = (json && json.detail) || "The upload failed. Please try again.";
          if (json && json.code === "MALWARE_DETECTED") {
            state.textContent = "Malware detected: this file was not stored. " + ((json && json.detail) || "") +
              " Scan your computer and upload a clean copy.";
          }
        }
        if (pending === 0 && anyStored) { anyStored = false; refreshSections(); }
      };
      xhr.onerror = function () {
        pending -= 1;
        item.setAttribute("data-result", "network");
        state.className = "upload-result bad";
        state.textContent = "The connection was lost; nothing was stored. Please try again.";
      };
      xhr.send(form);
    }
    function sendAll(files) { Array.prototype.forEach.call(files, send); }
    input.addEventListener("change", function () { sendAll(input.files); input.value = ""; });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) { if (event.dataTransfer) sendAll(event.dataTransfer.files); });
    var fallback = uploader.querySelector("[data-no-js]");
    if (fallback) fallback.hidden = true;
  }

  /* ---- Password reset: the e-mailed link carries its token in the fragment, which browsers never send to a
     server (so no access log or Referer holds it). Move it into the form, and out of the address bar. ---- */
  var resetToken = document.getElementById("f-token");
  if (resetToken && /(^#|&)token=/.test(window.location.hash)) {
    var match = window.location.hash.match(/token=([A-Za-z0-9_-]{1,200})/);
    if (match) {
      resetToken.value = match[1];
      var codeField = document.getElementById("reset-code-field");
      if (codeField) codeField.hidden = true;
      var found = document.getElementById("reset-link-found");
      if (found) found.hidden = false;
    }
    history.replaceState(null, "", window.location.pathname);
  }
  /* ---- An import's drafts: several files dropped at once, each sent to the draft whose reference starts its
     name (one upload per file, through the same endpoint and scan as any upload); files that match no draft are
     listed as not uploaded.  Each row also has its own upload slot. ---- */
  var bulk = document.querySelector("[data-bulk-drop]");
  var draftRows = Array.prototype.slice.call(document.querySelectorAll("[data-draft]"));
  var KINDS = bulk ? (bulk.getAttribute("data-kinds") || "").split(",") : [];
  var importPending = 0, importStored = false;
  function refreshChecks() {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", window.location.pathname);
    xhr.onload = function () {
      if (xhr.status !== 200) return;
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      draftRows.forEach(function (row) {
        var fresh = doc.getElementById(row.id);
        var mine = row.querySelector(".checks");
        if (fresh && mine) mine.replaceWith(fresh.querySelector(".checks"));
      });
      var button = doc.querySelector('form[action$="/submit"] button');
      var current = document.querySelector('form[action$="/submit"] button');
      if (button && current) current.textContent = button.textContent;
    };
    xhr.send();
  }
  function importUpload(url, kind, file, state, item) {
    var form = new FormData();
    form.append("kind", kind);
    form.append("file", file, file.name);
    importPending += 1;
    state.className = "upload-result"; state.textContent = "Uploading and scanning for viruses…";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-Requested-With", "portal");
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Idempotency-Key", (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
                         : String(Date.now()) + Math.random().toString(16).slice(2));
    xhr.onload = function () {
      var json = null;
      try { json = JSON.parse(xhr.responseText); } catch (e) { json = null; }
      importPending -= 1;
      if (xhr.status === 401) { leave(); return; }
      if (xhr.status === 201 && json) {
        importStored = true;
        if (item) item.setAttribute("data-result", "clean");
        state.className = "upload-result ok";
        state.textContent = "Scanned: no viruses found. Stored.";
      } else {
        if (item) item.setAttribute("data-result", (json && json.code) || "error");
        state.className = "upload-result bad";
        state.textContent = (json && json.detail) || "The upload failed. Please try again.";
      }
      if (importPending === 0 && importStored) { importStored = false; refreshChecks(); }
    };
    xhr.onerror = function () {
      importPending -= 1;
      if (item) item.setAttribute("data-result", "network");
      state.className = "upload-result bad";
      state.textContent = "The connection was lost; nothing was stored. Please try again.";
    };
    xhr.send(form);
  }
  function matchFile(name) {
    var stem = name.replace(/\.[^.]*$/, "").toLowerCase(), best = null;
    draftRows.forEach(function (row) {
      var ref = (row.getAttribute("data-reference") || "").toLowerCase();
      var next = stem.charAt(ref.length);
      if (ref && stem.lastIndexOf(ref, 0) === 0 && (next === "" || /[_\s.\-]/.test(next)) &&
          (!best || ref.length > best.ref.length)) best = {row: row, ref: ref};
    });
    if (!best) return null;
    var rest = stem.slice(best.ref.length).replace(/^[_\s.\-]+/, "").replace(/[\s\-]+/g, "_");
    return {row: best.row, kind: KINDS.indexOf(rest) >= 0 ? rest : "authorization"};
  }
  if (bulk) {
    var bulkZone = bulk.querySelector(".dropzone");
    var bulkInput = bulk.querySelector('input[type="file"]');
    var bulkList = bulk.querySelector(".uploads");
    var bulkAll = function (files) {
      Array.prototype.forEach.call(files, function (file) {
        var item = document.createElement("li"); item.className = "upload";
        var label = document.createElement("div"); label.className = "upload-name";
        var state = document.createElement("div"); state.className = "upload-result"; state.setAttribute("role", "status");
        item.appendChild(label); item.appendChild(state); bulkList.appendChild(item);
        var found = matchFile(file.name);
        if (!found) {
          label.textContent = file.name;
          item.setAttribute("data-result", "unmatched");
          state.className = "upload-result bad";
          state.textContent = "Not uploaded: no draft's reference starts this file's name.";
          return;
        }
        label.textContent = file.name + " → " + found.row.getAttribute("data-reference") + " (" + found.kind.replace(/_/g, " ") + ")";
        importUpload(found.row.getAttribute("data-upload-url"), found.kind, file, state, item);
      });
    };
    bulkInput.addEventListener("change", function () { bulkAll(bulkInput.files); bulkInput.value = ""; });
    ["dragenter", "dragover"].forEach(function (name) {
      bulkZone.addEventListener(name, function (event) { event.preventDefault(); bulkZone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      bulkZone.addEventListener(name, function (event) { event.preventDefault(); bulkZone.classList.remove("dragging"); });
    });
    bulkZone.addEventListener("drop", function (event) { if (event.dataTransfer) bulkAll(event.dataTransfer.files); });
  }
  document.querySelectorAll("[data-row-upload]").forEach(function (slot) {
    var row = slot.closest("[data-draft]");
    var input = slot.querySelector('input[type="file"]');
    input.addEventListener("change", function () {
      if (input.files.length) importUpload(row.getAttribute("data-upload-url"), slot.querySelector("select").value,
                                           input.files[0], slot.querySelector(".upload-result"), null);
      input.value = "";
    });
  });
})();
