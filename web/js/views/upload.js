// Upload: drag and drop or a file picker, several files, a progress bar each, thumbnails as
// they are made. Files too large for a Lambda request go through /uploads automatically.

import { allGroups, currentUser, DIRECT_LIMIT, uploadFile } from "../api.js";
import { announce, checkbox, clearFieldErrors, field, fieldError, formatBytes, h, heading, showError } from "../ui.js";
import { thumbnail } from "./browse.js";
import { rememberKey } from "./image.js";

const PARALLEL = 3;
const ACCEPT = "image/*,.heic,.heif,.avif";
const KEY_MIN = 8; // the API's rule for accessKey: 8-128 printable characters, no spaces
const KEY_RULE = /^[\x21-\x7e]{8,128}$/;

function fileRow(file) {
  const bar = h("progress", { max: file.size || 1, value: 0, "aria-label": `Upload progress of ${file.name}` });
  const status = h("span", { class: "status" }, file.size > DIRECT_LIMIT ? "Waiting (large file)" : "Waiting");
  const preview = h("span", { class: "thumb-slot" });
  const row = h("li", { class: "upload-row" }, preview,
    h("div", { class: "upload-info" }, h("span", { class: "name" }, `${file.name} (${formatBytes(file.size)})`), bar, status));
  return { row, bar, status, preview };
}

export async function uploadView(main) {
  if (!currentUser()) {
    const e = new Error("Sign in to upload images");
    e.status = 401;
    throw e;
  }
  let groups = [];
  try {
    groups = await allGroups();
  } catch (e) {
    showError(e, "Groups");
  }
  const input = h("input", { type: "file", name: "files", multiple: true, accept: ACCEPT, class: "file-input" });
  const chosen = h("p", { class: "chosen", "aria-live": "polite" }, "No files chosen.");
  let files = [];
  const setFiles = (list) => {
    files = [...list];
    chosen.textContent = files.length
      ? `${files.length} file${files.length === 1 ? "" : "s"} chosen (${formatBytes(files.reduce((n, f) => n + f.size, 0))}).`
      : "No files chosen.";
  };
  input.addEventListener("change", () => setFiles(input.files));

  input.id = "upload-files";
  const zone = h("div", { class: "dropzone" },
    h("p", {}, "Drop images here, or choose them:"),
    h("label", { for: "upload-files" }, "Image files"), input, chosen);
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer?.files?.length) setFiles(e.dataTransfer.files);
  });

  const description = h("textarea", { name: "description", rows: 2, maxlength: 2000 });
  const isPrivate = h("input", { type: "checkbox", name: "isPrivate" });
  const accessKey = h("input", { name: "accessKey", autocomplete: "off", spellcheck: "false", minlength: KEY_MIN, maxlength: 128 });
  const group = h("select", { name: "groupId" }, h("option", { value: "" }, "No group"),
    groups.map((g) => h("option", { value: g.id }, g.name)));
  const submit = h("button", { type: "submit" }, "Upload");
  const list = h("ul", { class: "uploads", role: "list", "aria-label": "Uploads" });
  // novalidate: the form checks itself and says why next to the field (a browser bubble vanishes).
  const form = h("form", { class: "upload-form", novalidate: true }, zone,
    field("Description", description, "Applies to every file of this upload."),
    checkbox("Private (only you, admins and people with a share link)", isPrivate),
    field("Access key (optional)", accessKey,
      `At least ${KEY_MIN} characters, no spaces. A key makes the upload private; without one, private images get a generated key.`),
    field("Group", group),
    h("div", { class: "actions" }, submit));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    if (!files.length) {
      showError(new Error("Choose one or more image files first"), "Upload");
      input.focus();
      return;
    }
    const key = accessKey.value;
    if (key && !KEY_RULE.test(key)) {
      fieldError(accessKey, `The access key must be ${KEY_MIN} to 128 characters without spaces (it has ${key.length}).`);
      return;
    }
    if (key) isPrivate.checked = true;
    const meta = { description: description.value, isPrivate: isPrivate.checked, groupId: group.value, accessKey: key };
    const queue = files.map((file) => ({ file, ...fileRow(file) }));
    list.replaceChildren(...queue.map((q) => q.row));
    submit.disabled = true;
    let done = 0;
    let failed = 0;
    const worker = async () => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        const { file, bar, status, preview, row } = item;
        status.textContent = "Uploading…";
        try {
          const image = await uploadFile(file, meta, (loaded, total) => {
            bar.max = total;
            bar.value = loaded;
          }, (stage) => {
            status.textContent = stage === "large" ? "Uploading (large file, through /uploads)…" : "Processing on the server…";
          });
          bar.value = bar.max;
          if (image.accessKey) rememberKey(image.id, image.accessKey);
          status.replaceChildren("Uploaded: ", h("a", { href: `/image/${image.id}` }, `open ${image.name}`));
          preview.replaceChildren(thumbnail(image));
          row.classList.add("ok");
        } catch (err) {
          failed += 1;
          row.classList.add("failed");
          status.textContent = `Failed: ${err.detail || err.message}`;
          showError(err, file.name);
        }
        done += 1;
      }
    };
    const total = queue.length;
    await Promise.all(Array.from({ length: Math.min(PARALLEL, total) }, worker));
    submit.disabled = false;
    announce(`${done - failed} of ${total} uploaded${failed ? `, ${failed} failed` : ""}.`);
    input.value = "";
    setFiles([]);
  });

  main.append(heading("Upload images"), form,
    h("section", { "aria-labelledby": "uploads-title" }, h("h2", { id: "uploads-title" }, "Progress"), list));
}
