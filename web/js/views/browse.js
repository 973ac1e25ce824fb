// Browsing: groups page by page, a group's images, all visible images, my images.

import { browserDraws, call, currentUser, waitForThumbnails } from "../api.js";
import { h, heading, lazyImage, pager } from "../ui.js";

const GROUPS_PAGE = 12;
const IMAGES_PAGE = 24;
const CONTEXT_KEY = "imagerepo.context";

function pageOf(query) {
  const n = Number(query.get("page") || "1");
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

// The list an image was opened from, for previous/next on the image page (which extends it
// with the neighbouring page when it reaches an end).
export function rememberContext(body, label, back, source) {
  sessionStorage.setItem(CONTEXT_KEY, JSON.stringify({
    ids: body.items.map((i) => i.id), label, back, source,
    first: body.page, last: body.page, totalPages: body.totalPages, pageSize: body.pageSize,
  }));
}

export function listContext() {
  try {
    return JSON.parse(sessionStorage.getItem(CONTEXT_KEY) || "null");
  } catch {
    return null;
  }
}

// Adds the page before or after the remembered ones when `id` sits at an end of the list.
export async function extendContext(ctx, id) {
  const at = ctx.ids.indexOf(id);
  if (at < 0 || !ctx.source) return ctx;
  const page = at === ctx.ids.length - 1 && ctx.last < ctx.totalPages ? ctx.last + 1
    : at === 0 && ctx.first > 1 ? ctx.first - 1 : 0;
  if (!page) return ctx;
  const body = await call("GET", ctx.source.path, { query: { ...ctx.source.query, page, pageSize: ctx.pageSize } });
  const ids = body.items.map((i) => i.id).filter((i) => !ctx.ids.includes(i));
  const next = page > ctx.last
    ? { ...ctx, ids: [...ctx.ids, ...ids], last: page }
    : { ...ctx, ids: [...ids, ...ctx.ids], first: page };
  sessionStorage.setItem(CONTEXT_KEY, JSON.stringify(next));
  return next;
}

export function altText(img) {
  return img.description ? `${img.name}: ${img.description}` : img.name;
}

// A thumbnail that appears once the server has made it. The original is never drawn inline
// unless the preview failed and the browser can draw its type (not HEIC/HEIF or TIFF).
export function thumbnail(img, { key = "", size = "small" } = {}) {
  const holder = h("span", { class: `thumb-box ${size}` });
  const className = size === "small" ? "thumb" : "preview";
  const show = (info) => {
    if (info.thumbnails.status === "ready") {
      holder.replaceChildren(lazyImage(`/images/${info.id}/thumbnail?size=${size}`, altText(info),
        { key, className, eager: size !== "small" }));
    } else if (info.thumbnails.status === "failed" && size !== "small" && browserDraws(info.contentType)) {
      holder.replaceChildren(lazyImage(`/images/${info.id}`, altText(info), { key, className: `${className} original`, eager: true }));
    } else if (info.thumbnails.status === "failed") {
      const why = browserDraws(info.contentType) ? "No preview" : `No preview (browsers cannot show ${info.contentType})`;
      holder.replaceChildren(h("span", { class: "thumb-missing", role: "img", "aria-label": altText(info) }, why));
    } else {
      holder.replaceChildren(h("span", { class: "thumb-pending", role: "img", "aria-label": `${altText(info)} (preview being made)` }, "Processing…"));
      waitForThumbnails(info.id, key).then((later) => {
        if (holder.isConnected && later.thumbnails.status !== "pending") show(later);
      }).catch(() => {});
    }
  };
  show(img);
  return holder;
}

export function imageGrid(items, { key = "" } = {}) {
  if (!items.length) return h("p", { class: "empty" }, "No images here yet.");
  return h("ul", { class: "grid", role: "list" }, items.map((img) =>
    h("li", {}, h("a", { href: `/image/${img.id}${key ? `#key=${encodeURIComponent(key)}` : ""}`, class: "card" },
      thumbnail(img, { key }),
      h("span", { class: "caption" }, img.name),
      img.isPrivate ? h("span", { class: "badge" }, "Private") : null))));
}

export async function groupsView(main, params, query) {
  const page = pageOf(query);
  const body = await call("GET", "/groups", { query: { page, pageSize: GROUPS_PAGE } });
  main.append(heading("Groups"));
  if (!body.total) {
    main.append(h("p", { class: "empty" }, "No groups yet. ", h("a", { href: "/public" }, "See all images"), "."));
    return;
  }
  main.append(h("ul", { class: "grid groups", role: "list" }, body.items.map((g) =>
    h("li", {}, h("a", { href: `/group/${g.id}`, class: "card" },
      g.cover && g.cover.small
        ? h("span", { class: "thumb-box small" }, lazyImage(g.cover.small, `Cover of ${g.name}`))
        : h("span", { class: "thumb-missing", role: "img", "aria-label": `${g.name} has no cover` }, "No images"),
      h("span", { class: "caption" }, g.name),
      h("span", { class: "count" }, `${g.imageCount} image${g.imageCount === 1 ? "" : "s"}`))))));
  main.append(pager(body, (p) => `/?page=${p}`, "groups"));
}

export async function groupView(main, [id], query) {
  const page = pageOf(query);
  const [group, body] = await Promise.all([
    call("GET", `/groups/${id}`),
    call("GET", `/groups/${id}/images`, { query: { page, pageSize: IMAGES_PAGE } }),
  ]);
  main.append(heading(group.name));
  if (group.description) main.append(h("p", { class: "lead" }, group.description));
  rememberContext(body, group.name, `/group/${id}?page=${page}`, { path: `/groups/${id}/images`, query: {} });
  main.append(imageGrid(body.items), pager(body, (p) => `/group/${id}?page=${p}`, "images"));
}

export async function listView(main, { kind, query }) {
  const page = pageOf(query);
  const mine = kind === "mine";
  if (mine && !currentUser()) {
    const e = new Error("Sign in to see your images");
    e.status = 401;
    throw e;
  }
  const body = await call("GET", "/images", { query: { page, pageSize: IMAGES_PAGE, owner: mine ? "me" : undefined } });
  const title = mine ? "My images" : "All images";
  main.append(heading(title));
  if (!mine) main.append(h("p", { class: "lead" }, currentUser() ? "Public images, and your own." : "Public images."));
  if (mine && !body.total) main.append(h("p", {}, h("a", { href: "/upload" }, "Upload your first images")));
  rememberContext(body, title, `/${mine ? "mine" : "public"}?page=${page}`,
    { path: "/images", query: mine ? { owner: "me" } : {} });
  main.append(imageGrid(body.items), pager(body, (p) => `/${mine ? "mine" : "public"}?page=${p}`, "images"));
}
