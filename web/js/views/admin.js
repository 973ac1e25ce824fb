// Admin: the store's statistics, running GC, users and groups.

import { call, currentUser, isAdmin } from "../api.js";
import { busy, field, formatBytes, go, h, heading, pager, showError, showNotice } from "../ui.js";

function statsList(s) {
  const ratio = s.dedupRatio === null || s.dedupRatio === undefined ? "-" : `${Number(s.dedupRatio).toFixed(3)} ×`;
  const rows = [["Users", s.users], ["Images", s.images], ["Distinct files (blobs)", s.blobs], ["Chunks", s.chunks],
    ["Logical bytes", `${formatBytes(s.logicalBytes)} (${s.logicalBytes})`],
    ["Stored bytes", `${formatBytes(s.storedBytes)} (${s.storedBytes})`], ["Dedup ratio", ratio]];
  return h("dl", { class: "meta stats" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v ?? "-"))]));
}

async function statsSection() {
  const section = h("section", { class: "panel", "aria-labelledby": "stats-title" }, h("h2", { id: "stats-title" }, "Storage"));
  const holder = h("div");
  holder.append(statsList(await call("GET", "/admin/stats")));
  const gc = h("form", {}, h("button", { type: "submit" }, "Run garbage collection now"));
  const result = h("p", { class: "gc-result", "aria-live": "polite" });
  gc.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(gc, async () => {
      const r = await call("POST", "/admin/gc");
      result.textContent = `GC freed ${r.deletedChunks} chunk${r.deletedChunks === 1 ? "" : "s"} (${formatBytes(r.freedBytes)}).`;
      holder.replaceChildren(statsList(await call("GET", "/admin/stats")));
    }, "Garbage collection");
  });
  section.append(holder, gc, result);
  return section;
}

async function usersSection(page) {
  const section = h("section", { class: "panel", "aria-labelledby": "users-title" }, h("h2", { id: "users-title" }, "Users"));
  let body;
  try {
    body = await call("GET", "/admin/users", { query: { page, pageSize: 20 }, what: "user administration" });
  } catch (e) {
    section.append(h("p", { class: "error-text" }, `Users cannot be listed: ${e.detail || e.message}`));
    return section;
  }
  const me = currentUser();
  const table = h("table", {}, h("caption", { class: "visually-hidden" }, "Users"),
    h("thead", {}, h("tr", {}, ["Name", "Email", "Images", "Role", "Disabled", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, body.items.map((u) => {
      const role = h("select", { "aria-label": `Role of ${u.name}` },
        ["user", "admin"].map((r) => h("option", { value: r, selected: r === u.role }, r)));
      const disabled = h("input", { type: "checkbox", checked: Boolean(u.disabled), "aria-label": `${u.name} disabled` });
      const form = h("form", { class: "inline" }, h("button", { type: "submit", disabled: u.id === me?.id }, "Save"));
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        busy(form, async () => {
          const saved = await call("PATCH", `/admin/users/${u.id}`, { json: { role: role.value, disabled: disabled.checked }, what: "user administration" });
          role.value = saved.role; // what the server holds now
          disabled.checked = Boolean(saved.disabled);
          showNotice(`${saved.name} saved: ${saved.disabled ? "disabled (signed out everywhere)" : "enabled"}, role ${saved.role}.`);
        }, `User ${u.name}`);
      });
      return h("tr", {}, h("td", {}, u.name), h("td", {}, u.email), h("td", {}, String(u.imageCount ?? "-")),
        h("td", {}, role), h("td", {}, disabled), h("td", {}, form));
    })));
  section.append(h("div", { class: "table-wrap" }, table), pager(body, (p) => `/manage?users=${p}`, "users"));
  return section;
}

async function groupsSection() {
  const section = h("section", { class: "panel", "aria-labelledby": "groups-title" }, h("h2", { id: "groups-title" }, "Groups"));
  const body = await call("GET", "/groups", { query: { page: 1, pageSize: 100 } });
  const name = h("input", { name: "name", required: true, maxlength: 100 });
  const description = h("input", { name: "description", maxlength: 2000 });
  const create = h("form", { class: "row" }, field("New group name", name), field("Description", description),
    h("button", { type: "submit" }, "Create group"));
  create.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, async () => {
      const g = await call("POST", "/groups", { json: { name: name.value.trim(), description: description.value } });
      showNotice(`Group ${g.name} created.`);
      go("/manage", { replace: true });
    }, "Create group");
  });
  const list = h("ul", { class: "group-admin", role: "list" }, body.items.map((g) => {
    const input = h("input", { value: g.name, maxlength: 100, "aria-label": `Name of group ${g.name}` });
    const rename = h("form", { class: "inline" }, input, h("button", { type: "submit" }, "Rename"));
    rename.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(rename, async () => {
        await call("PUT", `/groups/${g.id}`, { json: { name: input.value.trim() } });
        showNotice(`Group renamed to ${input.value.trim()}.`);
      }, "Rename group");
    });
    const remove = h("form", { class: "inline" }, h("button", { type: "submit", class: "danger" }, `Delete ${g.name}`));
    remove.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!window.confirm(`Delete the group ${g.name}?`)) return;
      busy(remove, async () => {
        try {
          await call("DELETE", `/groups/${g.id}`);
        } catch (err) {
          if (err.status !== 409 || !window.confirm(`${g.name} still has images. Delete it and ungroup them?`)) throw err;
          await call("DELETE", `/groups/${g.id}`, { query: { force: "true" } });
        }
        showNotice(`Group ${g.name} deleted.`);
        go("/manage", { replace: true });
      }, "Delete group");
    });
    return h("li", {}, h("a", { href: `/group/${g.id}` }, `${g.name} (${g.imageCount})`), rename, remove);
  }));
  section.append(create, list);
  if (body.totalPages > 1) section.append(h("p", {}, `Showing the first 100 of ${body.total} groups.`));
  return section;
}

export async function adminView(main, params, query) {
  if (!currentUser()) {
    const e = new Error("Sign in as an admin");
    e.status = 401;
    throw e;
  }
  main.append(heading("Administration"));
  if (!isAdmin()) {
    main.append(h("p", {}, "This page is for administrators."));
    return;
  }
  const usersPage = Math.max(1, Number(query.get("users") || "1") || 1);
  const sections = await Promise.allSettled([statsSection(), usersSection(usersPage), groupsSection()]);
  for (const s of sections) {
    if (s.status === "fulfilled") main.append(s.value);
    else showError(s.reason, "Administration");
  }
}
