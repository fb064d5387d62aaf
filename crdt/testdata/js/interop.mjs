// Interop driver for crdt's test against the JavaScript Automerge
// implementation. Usage:
//   node interop.mjs read DOC            -> prints the document as JSON
//   node interop.mjs edit DOC ACTOR OUT  -> loads DOC as ACTOR (hex), edits the
//        spec, writes OUT.changes (the new changes) and OUT.doc (whole document)
import * as A from "@automerge/automerge";
import { readFileSync, writeFileSync } from "node:fs";

function plain(v) {
  if (v === null || v === undefined) return v;
  if (typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array)) {
    if (typeof v.toJSON === "function" && Object.keys(v).length === 0) return v.toJSON();
    const o = {};
    for (const k of Object.keys(v)) o[k] = plain(v[k]);
    return o;
  }
  if (v && typeof v.val === "string") return v.val;
  return v;
}

const [, , cmd, file, actor, out] = process.argv;
if (cmd === "read") {
  const doc = A.load(new Uint8Array(readFileSync(file)));
  process.stdout.write(JSON.stringify(A.toJS(doc)) + "\n");
} else if (cmd === "edit") {
  const base = A.load(new Uint8Array(readFileSync(file)), { actor });
  const next = A.change(base, { time: 0 }, (d) => {
    d.spec.replicas = 5;
    d.spec.version = "2.0.0-js";
    d.spec.placement.labels.tier = "frontend";
    delete d.spec.resources.disk;
  });
  const changes = A.getChanges(base, next);
  const total = changes.reduce((n, c) => n + c.length, 0);
  const buf = new Uint8Array(total);
  let off = 0;
  for (const c of changes) { buf.set(c, off); off += c.length; }
  writeFileSync(out + ".changes", buf);
  writeFileSync(out + ".doc", A.save(next));
  process.stdout.write(JSON.stringify({ changes: changes.length }) + "\n");
} else {
  process.stderr.write("usage: node interop.mjs read DOC | edit DOC ACTOR OUT\n");
  process.exit(2);
}
