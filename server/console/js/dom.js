// Building DOM without innerHTML: every piece of data becomes a text node or an attribute value,
// so nothing an edge box, a registry file or a user typed can ever run as markup.

// h("div", {class: "x", onclick: fn}, child, ...): children are nodes, strings (text) or arrays.
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

// Data shown as is (names, ids, reasons): marked so the translation check knows it is not chrome.
export function data(text, tag = "span", props = {}) {
  return h(tag, { ...props, class: `d ${props.class || ""}`.trim() }, text === null || text === undefined ? "—" : String(text));
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  return append(el, children);
}
