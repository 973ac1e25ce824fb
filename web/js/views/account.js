// Accounts: sign in, register, and the account page (password change, deletion, sign out).

import { call, currentUser, endSession, hasRefreshToken, login, logout } from "../api.js";
import { busy, clearFieldErrors, field, fieldError, go, h, heading, showNotice } from "../ui.js";

function safeNext(query) {
  const next = query.get("next") || "";
  return next.startsWith("/") && !next.startsWith("//") ? next : "/mine";
}

export async function signinView(main, params, query) {
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "panel narrow" },
    field("Name or email", username), field("Password", password),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")),
    h("p", {}, "No account yet? ", h("a", { href: "/signup" }, "Register")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(form, async () => {
      const me = await login(username.value.trim(), password.value);
      go(safeNext(query), { replace: true, keepAlerts: false });
      showNotice(`Signed in as ${me.name}.`);
    }, "Sign in");
  });
  main.append(heading("Sign in"), form);
}

export async function signupView(main, params, query) {
  const name = h("input", { name: "name", autocomplete: "username", required: true, maxlength: 64 });
  const email = h("input", { name: "email", type: "email", autocomplete: "email", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: 8 });
  const form = h("form", { class: "panel narrow" },
    field("Name", name, "Letters, digits, spaces and _ . - (no @)."), field("Email", email),
    field("Password", password, "At least 8 characters, and not one of the 10,000 most common passwords."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create account")),
    h("p", {}, "Already registered? ", h("a", { href: "/signin" }, "Sign in")));
  // The API's refusal, also under the field it is about.
  const fieldOf = { common_password: password, invalid_password: password, invalid_name: name, name_taken: name,
    invalid_email: email, email_taken: email };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    busy(form, async () => {
      try {
        await call("POST", "/register", { json: { name: name.value.trim(), email: email.value.trim(), password: password.value }, auth: false });
      } catch (err) {
        if (fieldOf[err.code]) setTimeout(() => fieldError(fieldOf[err.code], err.message), 0); // after busy re-enables it
        throw err;
      }
      const me = await login(name.value.trim(), password.value);
      go(safeNext(query), { replace: true, keepAlerts: false });
      showNotice(`Welcome, ${me.name}: your account is ready.`);
    }, "Register");
  });
  main.append(heading("Create an account"), form);
}

export async function accountView(main) {
  if (!currentUser()) {
    const e = new Error("Sign in to see your account");
    e.status = 401;
    throw e;
  }
  const me = await call("GET", "/me");
  main.append(heading("Your account"),
    h("dl", { class: "meta" }, h("dt", {}, "Name"), h("dd", {}, me.name), h("dt", {}, "Email"), h("dd", {}, me.email),
      h("dt", {}, "Role"), h("dd", {}, me.role),
      h("dt", {}, "Session"), h("dd", {}, hasRefreshToken() ? "kept with a refresh token (this tab only)" : "access token only (this tab only)")));

  const current = h("input", { type: "password", name: "currentPassword", autocomplete: "current-password", required: true });
  const next = h("input", { type: "password", name: "newPassword", autocomplete: "new-password", required: true, minlength: 8 });
  const pw = h("form", { class: "panel", "aria-labelledby": "pw-title" }, h("h2", { id: "pw-title" }, "Change your password"),
    field("Current password", current),
    field("New password", next, "At least 8 characters, not a common password. Your other sessions end."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Change password")));
  const pwFieldOf = { common_password: next, invalid_password: next, wrong_password: current };
  pw.addEventListener("submit", (e) => {
    e.preventDefault();
    clearFieldErrors(pw);
    busy(pw, async () => {
      try {
        await call("PUT", "/me/password", { json: { currentPassword: current.value, newPassword: next.value }, what: "password changes" });
      } catch (err) {
        if (pwFieldOf[err.code]) setTimeout(() => fieldError(pwFieldOf[err.code], err.message), 0);
        throw err;
      }
      current.value = "";
      next.value = "";
      showNotice("Your password is changed.");
    }, "Change password");
  });

  const confirmPw = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const del = h("form", { class: "panel danger", "aria-labelledby": "del-title" }, h("h2", { id: "del-title" }, "Delete your account"),
    h("p", {}, "Your images are deleted with it. This cannot be undone."),
    field("Password", confirmPw),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, "Delete my account")));
  del.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!window.confirm("Delete your account and all your images?")) return;
    busy(del, async () => {
      await call("DELETE", "/me", { json: { password: confirmPw.value }, what: "account deletion" });
      endSession();
      go("/", { replace: true, keepAlerts: false });
      showNotice("Your account is deleted.");
    }, "Delete account");
  });

  const out = h("form", { class: "panel" }, h("button", { type: "submit" }, "Sign out"));
  out.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(out, async () => {
      await logout();
      go("/", { replace: true, keepAlerts: false });
      showNotice("You are signed out.");
    }, "Sign out");
  });
  main.append(pw, del, out);
}
