// node-filewatch follows one parameter through config-service's files, with Node's standard library only.
//
// The sidecar writes one file per parameter and swaps them atomically the way the kubelet swaps a
// ConfigMap volume: a new generation directory, then one rename of the `..data` symlink. So the app watches
// the directory (inotify through fs.watch) and re-reads its file when `..data` changes; a read never sees a
// partial file. Each new value is printed as one line:
//
//   config file=db_url value=postgres://new
//
// Settings (environment):
//   CONFIG_DIR    the sidecar's files directory (--local-files-dir), required
//   CONFIG_FILE   the parameter's file, relative to CONFIG_DIR (e.g. db_url or acme/orders/db_url), required
"use strict";

const fs = require("node:fs");
const path = require("node:path");

const dir = process.env.CONFIG_DIR;
const file = process.env.CONFIG_FILE;
if (!dir || !file) {
  console.error("node-filewatch: set CONFIG_DIR and CONFIG_FILE");
  process.exit(2);
}

let current = null;

function readValue() {
  let value;
  try {
    value = fs.readFileSync(path.join(dir, file), "utf8");
  } catch (error) {
    if (error.code === "ENOENT") {
      value = null; // not written yet, or the parameter was deleted
    } else {
      console.error(`node-filewatch: ${error.message}`);
      return;
    }
  }
  if (value !== current) {
    current = value;
    console.log(value === null ? `config file=${file} absent` : `config file=${file} value=${value}`);
  }
}

function watch() {
  try {
    // The swap renames `..data` inside `dir`: the directory watch sees it, whichever generation it points to.
    fs.watch(dir, { persistent: true }, (_event, name) => {
      if (name === null || name === "..data" || !name.startsWith("..")) {
        readValue();
      }
    });
  } catch (error) {
    // The directory does not exist yet (the sidecar has not started): try again shortly.
    setTimeout(watch, 500);
    return;
  }
  readValue();
}

watch();
