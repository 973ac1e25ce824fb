// The ImageRepo API on this origin: session (sessionStorage, never localStorage), token
// refresh, errors, uploads with progress (direct or through /uploads for large files).

const SESSION_KEY = "imagerepo.session";
export const DIRECT_LIMIT = 4_500_000; // the API's MaxUploadBytes default; larger files use /uploads

// "45 seconds", "15 minutes", "2 hours": a Retry-After wait for people.
export function formatWait(seconds) {
  const s = Math.max(1, Math.ceil(Number(seconds) || 0));
  if (s < 90) return `${s} second${s === 1 ? "" : "s"}`;
  const m = Math.ceil(s / 60);
  if (m < 120) return `${m} minutes`;
  return `${Math.ceil(m / 60)} hours`;
}

export class ApiError extends Error {
  constructor(status, code, message, requestId = "", retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfter = retryAfter; // seconds, from a 429's Retry-After
  }

  // One line for people: the API's message, the wait of a 429, then status, code and request id.
  get detail() {
    const bits = [this.status ? `HTTP ${this.status}` : "", this.code, this.requestId ? `request ${this.requestId}` : ""];
    const wait = this.retryAfter ? ` Try again in ${formatWait(this.retryAfter)}.` : "";
    return `${this.message}${wait} (${bits.filter(Boolean).join(", ")})`;
  }
}

// The content types a browser draws in an <img>; others (HEIC/HEIF, TIFF) are shown
// through their server-made preview only.
const DRAWABLE = new Set(["image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/bmp"]);
export function browserDraws(contentType) {
  return DRAWABLE.has(String(contentType || "").split(";")[0].trim().toLowerCase());
}

// Seconds from a Retry-After header (delta-seconds or an HTTP date), or null.
function retryAfterOf(headers) {
  const raw = headers.get("retry-after");
  if (!raw) return null;
  if (/^\d+$/.test(raw.trim())) return Number(raw.trim());
  const at = Date.parse(raw);
  return Number.isNaN(at) ? null : Math.max(1, Math.ceil((at - Date.now()) / 1000));
}

let session = readSession();
const listeners = new Set();

function readSession() {
  try {
    const raw = sessionStorage.getItem(SESSION_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function writeSession(value) {
  session = value;
  if (value) sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(SESSION_KEY);
  for (const fn of listeners) fn(value);
}

export function onSessionChange(fn) {
  listeners.add(fn);
}

export function currentUser() {
  return session ? session.user || null : null;
}

export function isAdmin() {
  return currentUser()?.role === "admin";
}

export function hasRefreshToken() {
  return Boolean(session?.refresh_token);
}

function sessionFromTokens(body, user) {
  const now = Date.now();
  const next = { access_token: body.access_token, expires_at: now + (body.expires_in || 3600) * 1000, user };
  if (body.refresh_token) {
    next.refresh_token = body.refresh_token;
    if (body.refresh_expires_in) next.refresh_expires_at = now + body.refresh_expires_in * 1000;
  }
  return next;
}

export async function errorFrom(response, what = "") {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const requestId = response.headers.get("apigw-requestid") || "";
  const retryAfter = response.status === 429 ? retryAfterOf(response.headers) : null;
  if (body && typeof body.error === "object" && body.error) {
    return new ApiError(response.status, body.error.code || "error", body.error.message || response.statusText,
      body.error.requestId || requestId, retryAfter);
  }
  const message = body && typeof body.message === "string" ? body.message : response.statusText || "Request failed";
  if ((response.status === 404 || response.status === 405) && what && /^(Not Found|Method Not Allowed)$/.test(message)) {
    return new ApiError(response.status, "not_available", `This server does not offer ${what} yet`, requestId);
  }
  const codes = { 401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large", 429: "throttled", 503: "unavailable" };
  return new ApiError(response.status, codes[response.status] || "error", message, requestId, retryAfter);
}

// The token itself was refused: 401 (other than a wrong password), or the authorizer's 403
// denial, which API Gateway answers as {"message":"Forbidden"} (the API's own 403s carry "error").
async function tokenRejected(r) {
  if (r.status !== 401 && r.status !== 403) return false;
  let body = null;
  try {
    body = await r.clone().json();
  } catch {
    body = null;
  }
  if (r.status === 401) return !(body?.error?.code === "invalid_credentials");
  return Boolean(body && !body.error && body.message === "Forbidden");
}

let refreshing = null;

// Trade the refresh token for a new pair, once however many requests noticed the expiry.
async function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      const current = session;
      if (!current?.refresh_token) {
        writeSession(null);
        throw new ApiError(401, "session_expired", "Your session has ended: please sign in again");
      }
      const r = await fetch("/token/refresh", {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ refresh_token: current.refresh_token }),
      });
      if (!r.ok) {
        writeSession(null);
        const err = await errorFrom(r, "token refresh");
        throw new ApiError(401, "session_expired", `Your session has ended: please sign in again (${err.message})`);
      }
      const body = await r.json();
      const next = sessionFromTokens(body, current.user);
      if (!next.refresh_token) next.refresh_token = current.refresh_token;
      writeSession(next);
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

async function bearer() {
  if (!session) return null;
  if (Date.now() > session.expires_at - 30_000) await refresh();
  return session ? session.access_token : null;
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  const qs = params.toString();
  return qs ? `${path}${path.includes("?") ? "&" : "?"}${qs}` : path;
}

// fetch with the session's token (when there is one); a 401 refreshes once and retries.
export async function send(method, path, { json, body, query, headers = {}, auth = true } = {}) {
  const url = withQuery(path, query);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const h = { accept: "application/json", ...headers };
    const token = auth ? await bearer() : null;
    if (token) h.authorization = `Bearer ${token}`;
    let payload = body;
    if (json !== undefined) {
      h["content-type"] = "application/json";
      payload = JSON.stringify(json);
    }
    let r;
    try {
      r = await fetch(url, { method, headers: h, body: payload });
    } catch (e) {
      throw new ApiError(0, "network_error", `The server did not answer (${e.message})`);
    }
    if (token && (await tokenRejected(r))) {
      if (attempt === 0 && session?.refresh_token) {
        await refresh();
        continue;
      }
      writeSession(null); // a dead access token and no way to refresh it: the session is over
    }
    return r;
  }
  throw new ApiError(401, "session_expired", "Your session has ended: please sign in again");
}

// A JSON call: the decoded body (null for 204), or an ApiError.
export async function call(method, path, options = {}) {
  const r = await send(method, path, options);
  if (!r.ok) throw await errorFrom(r, options.what);
  if (r.status === 204) return null;
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}

export async function login(username, password) {
  const r = await fetch("/login", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (!r.ok) throw await errorFrom(r, "sign-in");
  const tokens = await r.json();
  writeSession(sessionFromTokens(tokens, null));
  try {
    const me = await call("GET", "/me");
    writeSession({ ...session, user: me });
    return me;
  } catch (e) {
    writeSession(null);
    throw e;
  }
}

export async function logout() {
  if (!session) return;
  const body = session.refresh_token ? { refresh_token: session.refresh_token } : undefined;
  try {
    const r = await send("POST", "/logout", { json: body });
    if (!r.ok && ![401, 404, 405].includes(r.status)) throw await errorFrom(r, "sign-out");
  } finally {
    writeSession(null);
  }
}

export function endSession() {
  writeSession(null);
}

// -- images -----------------------------------------------------------------------------
export function keyQuery(key) {
  return key ? { accessKey: key } : undefined;
}

// An object URL for an image route (thumbnail or original), fetched with the token or key.
export async function blobUrl(path, key) {
  const r = await send("GET", withQuery(path, keyQuery(key)), { headers: { accept: "image/*" } });
  if (!r.ok) throw await errorFrom(r);
  return URL.createObjectURL(await r.blob());
}

export async function imageInfo(id, key) {
  return call("GET", `/images/${id}/info`, { query: keyQuery(key) });
}

// Polls the image until its thumbnails are made (or failed); resolves with the image JSON.
export async function waitForThumbnails(id, key, { signal, timeoutMs = 120_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let delay = 400;
  for (;;) {
    const info = await imageInfo(id, key);
    if (info.thumbnails.status !== "pending" || Date.now() > deadline || signal?.aborted) return info;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 1.5, 3000);
  }
}

// XHR, for upload progress events (fetch has none for request bodies).
function xhrPost(url, form, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    });
    xhr.addEventListener("load", () => resolve(xhr));
    xhr.addEventListener("error", () => reject(new ApiError(0, "network_error", "The upload was interrupted")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "The upload was cancelled")));
    xhr.send(form);
  });
}

async function errorFromXhr(xhr, what) {
  const response = new Response(xhr.responseText || null, {
    status: xhr.status,
    statusText: xhr.statusText,
    headers: {
      "apigw-requestid": xhr.getResponseHeader("apigw-requestid") || "",
      "retry-after": xhr.getResponseHeader("retry-after") || "",
    },
  });
  return errorFrom(response, what);
}

function metaFields(meta) {
  const out = { description: meta.description || "", isPrivate: meta.isPrivate ? 1 : 0 };
  if (meta.groupId) out.groupId = Number(meta.groupId);
  if (meta.isPrivate && meta.accessKey) out.accessKey = meta.accessKey;
  return out;
}

function contentTypeOf(file) {
  if (file.type) return file.type;
  const ext = file.name.toLowerCase().split(".").pop();
  return { heic: "image/heic", heif: "image/heif", avif: "image/avif" }[ext] || "application/octet-stream";
}

async function uploadDirect(file, meta, onProgress) {
  const form = new FormData();
  for (const [k, v] of Object.entries(metaFields(meta))) form.append(k, String(v));
  form.append("file", file, file.name);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const token = await bearer();
    if (!token) throw new ApiError(401, "session_expired", "Please sign in to upload");
    const xhr = await xhrPost("/images", form, { authorization: `Bearer ${token}`, accept: "application/json" }, onProgress);
    if (xhr.status === 201) return JSON.parse(xhr.responseText);
    if (xhr.status === 413) return null; // too large for a Lambda request: use /uploads
    const rejected = await tokenRejected(new Response(xhr.responseText || null, { status: xhr.status }));
    if (rejected && attempt === 0 && session?.refresh_token) {
      await refresh();
      continue;
    }
    throw await errorFromXhr(xhr, "uploads");
  }
  throw new ApiError(401, "session_expired", "Your session has ended: please sign in again");
}

async function uploadLarge(file, meta, onProgress, onStage) {
  const ticket = await call("POST", "/uploads", {
    json: { fileName: file.name, contentType: contentTypeOf(file), size: file.size, ...metaFields(meta) },
    what: "large uploads (/uploads)",
  });
  const form = new FormData();
  for (const [k, v] of Object.entries(ticket.fields)) form.append(k, v);
  form.append("file", file, file.name);
  const xhr = await xhrPost(ticket.url, form, {}, onProgress);
  if (xhr.status < 200 || xhr.status >= 300) {
    const m = /<Message>([^<]*)<\/Message>/.exec(xhr.responseText || "");
    throw new ApiError(xhr.status, "storage_refused", `The object store refused the upload: ${m ? m[1] : xhr.statusText}`);
  }
  onStage("processing");
  let delay = 400;
  for (;;) {
    const status = await call("GET", `/uploads/${ticket.uploadId}`);
    if (status.status === "ready") {
      const image = await imageInfo(status.imageId);
      if (ticket.accessKey) image.accessKey = ticket.accessKey;
      return image;
    }
    if (status.status === "failed") throw new ApiError(400, "ingest_failed", status.error || "The server could not read this file");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 1.5, 2000);
  }
}

// Upload one file: POST /images when it fits a Lambda request, else POST /uploads.
export async function uploadFile(file, meta, onProgress = () => {}, onStage = () => {}) {
  if (file.size <= DIRECT_LIMIT) {
    const image = await uploadDirect(file, meta, onProgress);
    if (image) return image;
  }
  onStage("large");
  return uploadLarge(file, meta, onProgress, onStage);
}

// Every group, for pickers (groups are few; pages of 100).
export async function allGroups() {
  const out = [];
  for (let page = 1; page <= 20; page += 1) {
    const body = await call("GET", "/groups", { query: { page, pageSize: 100 } });
    out.push(...body.items);
    if (page >= body.totalPages) break;
  }
  return out;
}

export function shareLink(id, key) {
  return `${location.origin}/image/${id}${key ? `#key=${encodeURIComponent(key)}` : ""}`;
}
