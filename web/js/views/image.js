// The image page: preview, metadata, download, previous/next, share link, edit and delete.

import { allGroups, browserDraws, call, currentUser, errorFrom, isAdmin, keyQuery, send, shareLink } from "../api.js";
import {
  announce, busy, checkbox, copyText, field, formatBytes, formatDate, go, h, heading, showError, showNotice,
} from "../ui.js";
import { extendContext, listContext, thumbnail } from "./browse.js";

// Keys this tab has set or been given, so a page reload keeps the share link (stored hashed server-side).
const KEYS = "imagerepo.keys";
function knownKeys() {
  try {
    return JSON.parse(sessionStorage.getItem(KEYS) || "{}");
  } catch {
    return {};
  }
}
export function rememberKey(id, key) {
  const keys = knownKeys();
  keys[id] = key;
  sessionStorage.setItem(KEYS, JSON.stringify(keys));
}

function keyFromUrl() {
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  return hash.get("key") || new URLSearchParams(location.search).get("key") || "";
}

async function download(img, key) {
  const r = await send("GET", `/images/${img.id}`, { query: keyQuery(key), headers: { accept: "*/*" } });
  if (!r.ok) throw await errorFrom(r);
  const url = URL.createObjectURL(await r.blob());
  const a = h("a", { href: url, download: img.name, class: "visually-hidden" }, "download");
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  announce(`Downloading ${img.name}`);
}

function sharePanel(img, key, canManage, onChange) {
  const panel = h("section", { class: "panel", "aria-labelledby": "share-title" }, h("h2", { id: "share-title" }, "Share"));
  const link = img.isPrivate ? (key ? shareLink(img.id, key) : "") : shareLink(img.id, "");
  if (link) {
    const input = h("input", { type: "text", readonly: true, value: link, class: "share-link" });
    const copy = h("button", {
      type: "button",
      onclick: async () => {
        const ok = await copyText(link, input);
        if (ok) showNotice("Share link copied.");
        else showError(new Error("Copy the link by hand: the browser refused the clipboard"));
      },
    }, "Copy share link");
    panel.append(field(img.isPrivate ? "Link with access key" : "Link", input,
      img.isPrivate ? "Anyone with this link can see the image." : "The image is public."), copy);
  } else if (img.isPrivate) {
    panel.append(h("p", {}, "This image is private. Its access key is stored hashed, so a new link makes a new key (older links stop working)."));
  }
  if (canManage) {
    const label = img.isPrivate ? "Create a new share link" : "Make private and create a share link";
    const form = h("form", {}, h("button", { type: "submit" }, label));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(form, async () => {
        const updated = await call("PUT", `/images/${img.id}`, { json: { isPrivate: 1, accessKey: null } });
        if (updated.accessKey) rememberKey(img.id, updated.accessKey);
        showNotice("The image is private; its new share link is ready to copy.");
        onChange();
      }, "Share");
    });
    panel.append(form);
  }
  return panel;
}

async function editPanel(img, onChange) {
  let groups = [];
  try {
    groups = await allGroups();
  } catch {
    groups = [];
  }
  const description = h("textarea", { name: "description", rows: 3, maxlength: 2000 }, img.description);
  const isPrivate = h("input", { type: "checkbox", name: "isPrivate", checked: img.isPrivate });
  const group = h("select", { name: "groupId" }, h("option", { value: "" }, "No group"),
    groups.map((g) => h("option", { value: g.id, selected: g.id === img.groupId }, g.name)));
  const newKey = h("input", { type: "checkbox", name: "newKey" });
  const form = h("form", { class: "panel", "aria-labelledby": "edit-title" },
    h("h2", { id: "edit-title" }, "Edit"),
    field("Description", description),
    checkbox("Private (only you, admins and people with the link)", isPrivate),
    field("Group", group),
    checkbox("New access key (ends older share links)", newKey),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save changes")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(form, async () => {
      const changes = { description: description.value, isPrivate: isPrivate.checked ? 1 : 0, groupId: group.value ? Number(group.value) : null };
      if (newKey.checked && isPrivate.checked) changes.accessKey = null;
      const updated = await call("PUT", `/images/${img.id}`, { json: changes });
      if (updated.accessKey) rememberKey(img.id, updated.accessKey);
      showNotice("Changes saved.");
      onChange();
    }, "Save");
  });
  const del = h("form", { class: "panel danger", "aria-labelledby": "delete-title" },
    h("h2", { id: "delete-title" }, "Delete"),
    h("p", {}, "Deleting removes the image for everyone."),
    h("button", { type: "submit", class: "danger" }, "Delete this image"));
  del.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!window.confirm(`Delete ${img.name}? This cannot be undone.`)) return;
    busy(del, async () => {
      await call("DELETE", `/images/${img.id}`);
      const back = listContext()?.back || "/mine";
      go(back, { replace: true, keepAlerts: false });
      showNotice(`${img.name} was deleted.`);
    }, "Delete");
  });
  return [form, del];
}

export async function imageView(main, [id], query) {
  const urlKey = keyFromUrl();
  if (urlKey) rememberKey(id, urlKey);
  const key = urlKey || knownKeys()[id] || "";
  const img = await call("GET", `/images/${id}/info`, { query: keyQuery(key) });
  const user = currentUser();
  const canManage = Boolean(user && (user.id === img.creator || isAdmin()));
  const rerender = () => go(`/image/${id}`, { replace: true }); // the new key is remembered, not in the URL

  main.append(heading(img.name));
  let ctx = listContext();
  if (ctx) ctx = await extendContext(ctx, Number(id)).catch(() => ctx);
  const at = ctx ? ctx.ids.indexOf(Number(id)) : -1;
  if (at >= 0) {
    const prev = ctx.ids[at - 1];
    const next = ctx.ids[at + 1];
    main.append(h("nav", { class: "prevnext", "aria-label": "Previous and next image" },
      prev ? h("a", { href: `/image/${prev}`, rel: "prev" }, "‹ Previous") : h("span", { class: "disabled" }, "‹ Previous"),
      h("a", { href: ctx.back }, `Back to ${ctx.label}`),
      next ? h("a", { href: `/image/${next}`, rel: "next" }, "Next ›") : h("span", { class: "disabled" }, "Next ›")));
  }

  const figure = h("figure", { class: "preview-box" }, thumbnail(img, { key, size: "preview" }),
    h("figcaption", {}, img.description || h("span", { class: "muted" }, "No description")));
  // HEIC/HEIF and TIFF: the page shows the server's JPEG preview; the download is the original.
  const typeText = browserDraws(img.contentType) ? img.contentType
    : `${img.contentType} (shown through its preview; the download is the original)`;
  const meta = h("dl", { class: "meta" },
    ...[["Size", formatBytes(img.size)], ["Dimensions", `${img.width} × ${img.height} px`], ["Type", typeText],
      ["Uploaded", formatDate(img.createdAt)], ["Owner", img.creatorName || `user ${img.creator}`],
      ["Visibility", img.isPrivate ? "Private" : "Public"], ["SHA-256", img.sha256]]
      .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const dl = h("button", {
    type: "button",
    onclick: () => download(img, key).catch((e) => showError(e, "Download")),
  }, `Download original (${formatBytes(img.size)})`);
  main.append(h("div", { class: "image-page" }, figure,
    h("div", { class: "side" }, meta, h("div", { class: "actions" }, dl),
      sharePanel(img, key, canManage, rerender),
      ...(canManage ? await editPanel(img, rerender) : []))));
}
