// Small DOM helpers shared by the views: elements, alerts, formatting, pager, lazy thumbnails.

import { ApiError, blobUrl } from "./api.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const alerts = () => document.getElementById("alerts");

export function clearAlerts() {
  alerts().replaceChildren();
}

// The API's own message, with its status, code and request id; stays until dismissed.
export function showError(err, context = "") {
  const text = err instanceof ApiError ? err.detail : err && err.message ? err.message : String(err);
  const box = h("div", { class: "alert error" },
    h("p", {}, h("strong", {}, context ? `${context}: ` : "Error: "), text),
    h("button", { type: "button", class: "link", onclick: () => box.remove() }, "Dismiss"));
  alerts().append(box);
  console.warn(context, err);
  return box;
}

export function showNotice(text) {
  const box = h("div", { class: "alert notice" }, h("p", {}, text),
    h("button", { type: "button", class: "link", onclick: () => box.remove() }, "Dismiss"));
  alerts().append(box);
  announce(text);
}

export function announce(text) {
  const el = document.getElementById("status");
  el.textContent = "";
  setTimeout(() => {
    el.textContent = text;
  }, 30);
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

export function formatDate(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

// Page navigation: previous/next links, a page picker, and "page X of Y".
export function pager({ page, totalPages, total }, hrefFor, noun = "items") {
  const nav = h("nav", { class: "pager", "aria-label": "Pages" });
  const last = Math.max(totalPages, 1);
  nav.append(page > 1 ? h("a", { href: hrefFor(page - 1), rel: "prev" }, "‹ Previous")
    : h("span", { class: "disabled", "aria-disabled": "true" }, "‹ Previous"));
  const id = `page-picker-${Math.random().toString(36).slice(2, 8)}`;
  const select = h("select", { id, name: "page" });
  for (let p = 1; p <= last; p += 1) select.append(h("option", { value: p, selected: p === page }, String(p)));
  const form = h("form", { class: "picker" }, h("label", { for: id }, "Page"), select,
    h("span", {}, ` of ${last} (${total} ${noun})`), h("button", { type: "submit" }, "Go"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    go(hrefFor(Number(select.value)), { keepAlerts: false });
  });
  nav.append(form);
  nav.append(page < last ? h("a", { href: hrefFor(page + 1), rel: "next" }, "Next ›")
    : h("span", { class: "disabled", "aria-disabled": "true" }, "Next ›"));
  return nav;
}

// Object URLs made for the current view, released when the next view renders.
const made = new Set();
export function releaseImages() {
  for (const url of made) URL.revokeObjectURL(url);
  made.clear();
}

const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) {
        observer.unobserve(entry.target);
        load(entry.target);
      }
    }
  }, { rootMargin: "200px" })
  : null;

async function load(img) {
  try {
    const url = await blobUrl(img.dataset.src, img.dataset.key || "");
    made.add(url);
    img.src = url;
    img.classList.add("loaded");
  } catch (e) {
    img.replaceWith(h("span", { class: "thumb-missing", role: "img", "aria-label": img.alt }, "Unavailable"));
    if (!(e instanceof ApiError) || e.status >= 500) console.warn("thumbnail", e);
  }
}

// An <img> that loads (with the session's token or an access key) when it nears the viewport.
export function lazyImage(path, alt, { key = "", className = "thumb", eager = false } = {}) {
  const img = h("img", { alt, class: className, dataset: { src: path, key }, decoding: "async" });
  if (observer && !eager) observer.observe(img);
  else load(img);
  return img;
}

export function field(label, input, hint = "") {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const hintEl = hint ? h("small", { id: `${id}-hint`, class: "hint" }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl);
}

// A message under one field (the API's, or the form's own check), read out with it, and focus.
export function fieldError(input, message) {
  const box = input.closest(".field") || input.parentElement;
  const id = `${input.id}-error`;
  let el = box.querySelector(`#${CSS.escape(id)}`);
  if (!el) {
    el = h("p", { id, class: "field-error" }); // the alert at the top is the live region
    box.append(el);
  }
  el.textContent = message;
  input.setAttribute("aria-invalid", "true");
  const described = (input.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && x !== id);
  input.setAttribute("aria-describedby", [...described, id].join(" "));
  input.focus();
}

export function clearFieldErrors(form) {
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  for (const input of form.querySelectorAll("[aria-invalid]")) {
    input.removeAttribute("aria-invalid");
    const rest = (input.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && !x.endsWith("-error"));
    if (rest.length) input.setAttribute("aria-describedby", rest.join(" "));
    else input.removeAttribute("aria-describedby");
  }
}

export function checkbox(label, input) {
  const id = input.id || `c-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field check" }, input, h("label", { for: id }, label));
}

// Disable a form's controls while an async action runs; errors are shown, not thrown.
export async function busy(form, action, context) {
  const controls = [...form.querySelectorAll("button, input, select, textarea")];
  const was = controls.map((c) => c.disabled);
  const focused = document.activeElement;
  controls.forEach((c) => {
    c.disabled = true;
  });
  try {
    return await action();
  } catch (e) {
    showError(e, context);
    return undefined;
  } finally {
    controls.forEach((c, i) => {
      c.disabled = was[i];
    });
    if (focused && focused.isConnected && document.activeElement === document.body) focused.focus();
  }
}

export function heading(text) {
  return h("h1", { tabindex: "-1" }, text);
}

export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (input) {
      input.select();
      return document.execCommand("copy");
    }
    return false;
  }
}

// Client-side navigation from a view (app.js listens), without importing the router.
export function go(href, { replace = false, keepAlerts = true } = {}) {
  window.dispatchEvent(new CustomEvent("imagerepo:navigate", { detail: { href, replace, keepAlerts } }));
}
