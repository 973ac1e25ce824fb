// The gallery's shell: client routes (History API), navigation, focus on each new page.
// Client routes never use an API path (/images, /groups, /login, /admin…), so the server
// can answer them with index.html and the API keeps its own.

import { currentUser, isAdmin, logout, onSessionChange } from "./api.js";
import { accountView, signinView, signupView } from "./views/account.js";
import { adminView } from "./views/admin.js";
import { groupsView, groupView, listView } from "./views/browse.js";
import { imageView } from "./views/image.js";
import { uploadView } from "./views/upload.js";
import { clearAlerts, h, releaseImages, showError, showNotice } from "./ui.js";

const routes = [
  [/^\/$/, groupsView],
  [/^\/group\/(\d+)$/, groupView],
  [/^\/public$/, (main, params, query) => listView(main, { kind: "all", query })],
  [/^\/mine$/, (main, params, query) => listView(main, { kind: "mine", query })],
  [/^\/image\/(\d+)$/, imageView],
  [/^\/upload$/, uploadView],
  [/^\/signin$/, signinView],
  [/^\/signup$/, signupView],
  [/^\/account$/, accountView],
  [/^\/manage$/, adminView],
];

function navItems() {
  const user = currentUser();
  const items = [["/", "Groups"], ["/public", "All images"]];
  if (user) {
    items.push(["/mine", "My images"], ["/upload", "Upload"]);
    if (isAdmin()) items.push(["/manage", "Admin"]);
    items.push(["/account", `Account (${user.name})`]);
  } else {
    items.push(["/signin", "Sign in"], ["/signup", "Register"]);
  }
  return items;
}

function renderNav() {
  const here = location.pathname;
  const nav = document.getElementById("nav");
  nav.replaceChildren(...navItems().map(([href, label]) =>
    h("li", {}, h("a", { href, "aria-current": href === here ? "page" : null }, label))));
  if (currentUser()) {
    nav.append(h("li", {}, h("button", {
      type: "button",
      class: "link",
      onclick: async () => {
        try {
          await logout();
          navigate("/");
          showNotice("You are signed out.");
        } catch (e) {
          showError(e, "Sign out");
        }
      },
    }, "Sign out")));
  }
}

let renderCount = 0;

export async function render({ keepAlerts = false } = {}) {
  renderCount += 1;
  const mine = renderCount;
  releaseImages();
  if (!keepAlerts) clearAlerts();
  renderNav();
  const main = document.getElementById("main");
  main.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  main.setAttribute("aria-busy", "true");
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const query = new URLSearchParams(location.search);
  const match = routes.map(([re, view]) => [re.exec(path), view]).find(([m]) => m);
  const staging = h("div", { class: "view" });
  try {
    if (match) await match[1](staging, match[0].slice(1), query);
    else staging.append(h("h1", { tabindex: "-1" }, "Page not found"), h("p", {}, h("a", { href: "/" }, "Back to the gallery")));
  } catch (e) {
    if (e && e.status === 401 && !currentUser()) {
      navigate(`/signin?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`, { replace: true });
      showError(e, "Sign in needed");
      return;
    }
    staging.append(h("h1", { tabindex: "-1" }, "Something went wrong"));
    showError(e);
  }
  if (mine !== renderCount) return; // a newer navigation won
  main.replaceChildren(staging);
  main.removeAttribute("aria-busy");
  const title = main.querySelector("h1");
  document.title = title ? `${title.textContent} · ImageRepo` : "ImageRepo";
  (title || main).focus({ preventScroll: false });
}

export function navigate(href, { replace = false, keepAlerts = true } = {}) {
  const url = new URL(href, location.href);
  if (url.origin !== location.origin) {
    location.href = href;
    return;
  }
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render({ keepAlerts });
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute("download") || a.origin !== location.origin) return;
  const path = a.pathname;
  if (!routes.some(([re]) => re.test(path.replace(/\/+$/, "") || "/"))) return; // an API link: let it load
  e.preventDefault();
  navigate(a.pathname + a.search + a.hash, { keepAlerts: false });
});

window.addEventListener("imagerepo:navigate", (e) => navigate(e.detail.href, e.detail));
window.addEventListener("popstate", () => render());
onSessionChange(() => renderNav());

render();
