// cnnspec explorer: swaps pre-laid-out Graphviz views, pans and zooms them, and
// shows the selected layer's or block's facts.
//
// Reads: the <script type="application/gzip+base64" data-view="KEY"> elements (one
// gzipped SVG per view; "" is the base view, unpacked once at load by the browser's
// DecompressionStream) and the JSON in #explorer-data: views (parent, chain, anchor,
// and per drawn node the facts key and the view it opens), facts (records by name),
// where (name -> [view, drawn path]) and names (for search). Every node and cluster
// <g> carries data-path. No number is computed here: the page brings them all.
(function () {
  "use strict";

  const SVG_NS = "http://www.w3.org/2000/svg";
  const data = JSON.parse(document.getElementById("explorer-data").textContent);
  const stage = document.getElementById("stage");
  const canvas = document.getElementById("canvas");
  const panel = document.getElementById("facts");
  const crumbs = document.getElementById("crumbs");
  const search = document.getElementById("search");
  const suggestions = document.getElementById("suggestions");
  const closeButton = document.getElementById("close-view");

  const svgs = {};  // view key -> SVG text, filled by unpackViews
  const state = { view: null, selected: null, viewport: null, width: 0, height: 0,
                  x: 0, y: 0, k: 1 };

  // ------------------------------------------------------------------ views

  async function unpackViews() {
    const packed = document.querySelectorAll('script[type="application/gzip+base64"]');
    await Promise.all(Array.from(packed, async (script) => {
      const bytes = Uint8Array.from(atob(script.textContent), (c) => c.charCodeAt(0));
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      svgs[script.dataset.view] = await new Response(stream).text();
    }));
  }

  function showView(key) {
    canvas.innerHTML = svgs[key];
    const svg = canvas.querySelector("svg");
    const box = svg.viewBox.baseVal;
    state.width = box.width;
    state.height = box.height;
    // The page sizes the SVG; our own transform places the drawing inside it.
    ["viewBox", "width", "height"].forEach((name) => svg.removeAttribute(name));
    const viewport = document.createElementNS(SVG_NS, "g");
    viewport.setAttribute("class", "viewport");
    viewport.appendChild(svg.querySelector("g.graph"));
    svg.appendChild(viewport);
    state.view = key;
    state.viewport = viewport;
    state.selected = null;
    markInteractive(data.views[key]);
    showCrumbs(data.views[key]);
    closeButton.disabled = key === "";
    apply();
  }

  function markInteractive(view) {
    canvas.querySelectorAll("g[data-path]").forEach((group) => {
      const path = group.dataset.path;
      if (group.classList.contains("node")) {
        group.classList.toggle("opens", Boolean(view.nodes[path] && view.nodes[path].opens));
      } else if (view.chain.includes(path)) {
        group.classList.add("closable");
      }
    });
  }

  function showCrumbs(view) {
    crumbs.replaceChildren();
    view.chain.forEach((key, index) => {
      const outer = view.chain[index - 1];
      if (index > 0) crumbs.append(el("span", "sep", "›"));
      // Each crumb names one level: `branch2.1` inside `inception4a`.
      const short = outer && key.startsWith(outer + ".") ? key.slice(outer.length + 1) : key;
      const crumb = el("button", "", key === "" ? data.name : short);
      crumb.dataset.view = key;
      crumb.title = key || data.name;
      if (index < view.chain.length - 1) {
        crumb.title = key === "" ? "close every block" : `fold everything inside ${key}`;
        crumb.addEventListener("click", () => (key === "" ? closeAll() : openView(key)));
      }
      crumbs.append(crumb);
    });
  }

  function openView(key) {
    showView(key);
    const cluster = element(key);
    select(key);
    if (cluster) focus(cluster, { fit: true });
  }

  function closeView(key) {
    const view = data.views[key];
    const anchor = view.anchor;
    showView(view.parent);
    if (anchor) {
      select(anchor);
      focus(element(anchor), { fit: false });
    }
  }

  function closeAll() {
    showView("");
    home();
  }

  function element(path) {
    return canvas.querySelector(`g[data-path="${CSS.escape(path)}"]`);
  }

  // ------------------------------------------------------------------ selection

  function select(path) {
    canvas.querySelectorAll("g.selected").forEach((g) => g.classList.remove("selected"));
    const group = element(path);
    if (!group) return;
    group.classList.add("selected");
    state.selected = path;
    const node = data.views[state.view].nodes[path];
    const key = node ? node.facts : path;
    showFacts(data.facts[key], node && node.opens, group.classList.contains("closable"));
  }

  const KINDS = { layer: "layer", input: "input", block: "block", repeat: "repeated block" };

  function showFacts(record, opens, closable) {
    panel.replaceChildren();
    if (!record) return emptyPanel();
    panel.append(el("div", "kind", `${KINDS[record.kind]} · ${record.op}`));
    panel.append(el("h2", "", record.name));
    if (record.training_only) panel.append(el("span", "badge", "training only (aux head)"));
    if (record.frozen) panel.append(el("span", "badge", "frozen"));
    panel.append(factList(record));
    if (record.source) panel.append(sourceBox(record.source));
    panel.append(actions(record, opens, closable));
  }

  function factList(record) {
    const list = el("dl");
    const single = record.kind === "layer" || record.kind === "input";
    row(list, "out", "Output", record.out);
    const inputs = record.in.length ? record.in : [{ shape: "—", from: "" }];
    inputs.forEach((input, index) => {
      const label = index > 0 ? "" : inputs.length > 1 ? "Inputs" : "Input";
      row(list, "in", label, input.shape, input.from && `from ${input.from}`, "from");
    });
    row(list, "params", "Parameters", record.params_text,
        record.params ? `(${record.params_short})` : "");
    row(list, "macs", "MACs", record.macs_text, record.macs ? `(${record.macs_short})` : "");
    row(list, "activation", "Activation memory", record.activation_text,
        single ? "" : "(its layers' outputs)");
    row(list, "rf", "Receptive field", record.rf === "global" ? "global" : `${record.rf} px`);
    if (!single) row(list, "layers", "Layers", String(record.layers));
    if (record.instances) {
      row(list, "instances", "Instances",
          `${record.instances.length} identical: ${record.instances.join(", ")}`);
    }
    return list;
  }

  function row(list, fact, label, value, aside, asideClass = "short") {
    const cell = el("dd", "", value);
    cell.dataset.fact = fact;
    if (aside) cell.append(" ", el("span", asideClass, aside));
    list.append(el("dt", "", label), cell);
  }

  function sourceBox(source) {
    const box = el("div", "source");
    box.append(el("div", "where", `${source.file}:${source.line}`));
    const code = el("pre");
    code.append(el("code", "", source.text));
    box.append(code);
    return box;
  }

  function actions(record, opens, closable) {
    const bar = el("div", "actions");
    if (opens) bar.append(button(`Open ${opens}`, () => openView(opens)));
    if (closable) bar.append(button(`Close ${record.name}`, () => closeView(record.name)));
    return bar;
  }

  function emptyPanel() {
    panel.replaceChildren(el("p", "empty", "Click a layer or a block for its shapes, " +
      "parameters, MACs, memory, receptive field and source line."));
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(text, onClick) {
    const node = el("button", "", text);
    node.addEventListener("click", onClick);
    return node;
  }

  // ------------------------------------------------------------------ pan and zoom

  function apply() {
    state.viewport.setAttribute("transform",
      `translate(${state.x.toFixed(1)} ${state.y.toFixed(1)}) scale(${state.k.toFixed(4)})`);
  }

  function fit() {
    const box = stage.getBoundingClientRect();
    state.k = clamp(Math.min(box.width / state.width, box.height / state.height) * 0.94);
    state.x = (box.width - state.width * state.k) / 2;
    state.y = (box.height - state.height * state.k) / 2;
    apply();
  }

  // The first look: readable (up to 1.2x), the whole width, from the top when tall.
  function home() {
    const box = stage.getBoundingClientRect();
    state.k = clamp(Math.min(1.2, (box.width * 0.94) / state.width));
    state.x = (box.width - state.width * state.k) / 2;
    const room = box.height - state.height * state.k;
    state.y = room > 0 ? room / 2 : 48;  // below the breadcrumbs
    apply();
  }

  function zoomAt(px, py, factor) {
    const k = clamp(state.k * factor);
    state.x = px - (px - state.x) * (k / state.k);
    state.y = py - (py - state.y) * (k / state.k);
    state.k = k;
    apply();
  }

  function zoomCentre(factor) {
    const box = stage.getBoundingClientRect();
    zoomAt(box.width / 2, box.height / 2, factor);
  }

  // Centres `group`; with fit, zooms so it fills most of the stage (never past 1.4x),
  // without, to at least 1.3x, where Graphviz's 10pt labels read as 13px text.
  function focus(group, { fit: fitting }) {
    const box = stage.getBoundingClientRect();
    const rect = group.getBoundingClientRect();
    const width = rect.width / state.k;
    const height = rect.height / state.k;
    const k = fitting
      ? clamp(Math.min(1.4, (box.width * 0.85) / width, (box.height * 0.85) / height))
      : Math.max(state.k, 1.3);
    const gx = (rect.left + rect.width / 2 - box.left - state.x) / state.k;
    const gy = (rect.top + rect.height / 2 - box.top - state.y) / state.k;
    state.k = k;
    state.x = box.width / 2 - gx * k;
    state.y = box.height / 2 - gy * k;
    apply();
  }

  function clamp(k) {
    return Math.min(6, Math.max(0.05, k));
  }

  let drag = null;
  let dragged = false;

  stage.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || event.target.closest("button, nav")) return;
    drag = { x: event.clientX, y: event.clientY, ox: state.x, oy: state.y };
    dragged = false;
  });
  window.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (!dragged && Math.hypot(dx, dy) < 4) return;
    dragged = true;
    stage.classList.add("dragging");
    state.x = drag.ox + dx;
    state.y = drag.oy + dy;
    apply();
  });
  window.addEventListener("pointerup", () => {
    drag = null;
    stage.classList.remove("dragging");
  });
  stage.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = stage.getBoundingClientRect();
    zoomAt(event.clientX - box.left, event.clientY - box.top, Math.exp(-event.deltaY * 0.0015));
  }, { passive: false });

  // ------------------------------------------------------------------ clicks

  canvas.addEventListener("click", (event) => {
    if (dragged) { dragged = false; return; }
    const group = event.target.closest("g[data-path]");
    if (!group) return;
    const path = group.dataset.path;
    if (group.classList.contains("node")) {
      const node = data.views[state.view].nodes[path];
      if (node && node.opens) openView(node.opens);
      else select(path);
    } else if (group.classList.contains("closable") && event.target.closest("text")) {
      closeView(path);
    } else if (data.facts[path]) {
      select(path);
    }
  });

  document.getElementById("zoom-in").addEventListener("click", () => zoomCentre(1.25));
  document.getElementById("zoom-out").addEventListener("click", () => zoomCentre(0.8));
  document.getElementById("fit").addEventListener("click", fit);
  closeButton.addEventListener("click", () => { if (state.view) closeView(state.view); });

  // ------------------------------------------------------------------ search

  // Opens the views that draw `name`, selects it and centres it.
  function reveal(name) {
    const found = data.where[name];
    if (!found) return false;
    const [view, path] = found;
    if (view !== state.view) showView(view);
    select(path);
    focus(element(path), { fit: path === view && view !== "" });
    hideSuggestions();
    return true;
  }

  function matches(query) {
    const starts = [];
    const contains = [];
    for (const name of data.names) {
      if (name.startsWith(query)) starts.push(name);
      else if (name.includes(query)) contains.push(name);
    }
    return starts.concat(contains);
  }

  function showSuggestions(query) {
    const found = matches(query).slice(0, 12);
    suggestions.replaceChildren();
    if (!found.length) {
      suggestions.append(el("li", "empty", `no layer or block matches “${query}”`));
    }
    found.forEach((name, index) => {
      const item = el("li", index === 0 ? "active" : "", name);
      item.setAttribute("role", "option");
      item.addEventListener("mousedown", (event) => { event.preventDefault(); reveal(name); });
      suggestions.append(item);
    });
    suggestions.hidden = false;
    return found;
  }

  function hideSuggestions() {
    suggestions.hidden = true;
  }

  search.addEventListener("input", () => {
    const query = search.value.trim();
    if (!query) return hideSuggestions();
    const found = showSuggestions(query);
    // A full name that nothing else extends is revealed as it is typed.
    if (data.where[query] && !found.some((name) => name.startsWith(query + "."))) reveal(query);
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      const query = search.value.trim();
      if (!reveal(query)) {
        const found = matches(query);
        if (found.length) reveal(found[0]);
      }
    } else if (event.key === "Escape") {
      hideSuggestions();
      search.blur();
    }
  });
  search.addEventListener("blur", hideSuggestions);

  document.addEventListener("keydown", (event) => {
    if (event.target === search) return;
    if (event.key === "/") { event.preventDefault(); search.focus(); search.select(); }
    else if (event.key === "Escape" && state.view) closeView(state.view);
    else if (event.key === "+" || event.key === "=") zoomCentre(1.25);
    else if (event.key === "-") zoomCentre(0.8);
    else if (event.key === "0") fit();
  });

  unpackViews().then(() => {
    showView("");
    home();
    emptyPanel();
    document.body.dataset.ready = "true";
  }).catch((problem) => {
    canvas.replaceChildren(el("p", "failed", "This browser could not unpack the diagrams " +
      `(${problem}). The explorer needs DecompressionStream: Chrome or Edge 80+, ` +
      "Firefox 113+, Safari 16.4+."));
    throw problem;
  });
})();
