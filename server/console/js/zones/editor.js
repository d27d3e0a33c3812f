// The installer's zone editor, on the camera's latest frame: draw a new zone or mask (privacy, motion) by
// clicking its corners, drag a corner or a whole shape, double-click a corner to delete it, delete a
// shape; each zone's rules come from a form the edge's own schema builds (./schema_form.js), checked
// against that schema before the save, which the server checks again and publishes retained for the
// edge node to apply.
import { get, put } from "../api.js";
import { clear, data, h, svg } from "../dom.js";
import { t, tOr } from "../i18n.js";
import { check, fields, models, withDefaults } from "./schema_form.js";

const round = (v) => Math.round(v * 1000) / 1000;
const clamp = (v) => Math.min(1, Math.max(0, v));
const MASKS = ["privacy", "motion"];

export async function zoneEditor(camera) {
  const base = `/api/cameras/${camera.site_id}/${camera.node_id}/${camera.camera_id}/zones`;
  const schema = await get("/api/cameras/zone-schema");
  const { zone: zoneModel, rules: ruleModels } = models(schema);
  let config;
  try {
    config = await get(base);
  } catch (error) {
    if (error.status !== 404) throw error;
    config = { version: 0, zones: [], masks: {} };  // a camera nobody has drawn on yet
  }
  const zones = structuredClone(config.zones);
  // Masks wrapped as {polygon}, so a mask is dragged, selected and deleted as a zone is.
  const masks = Object.fromEntries(MASKS.map((kind) => [kind, ((config.masks || {})[kind] || []).map((polygon) => ({ polygon }))]));
  let selected = zones[0] || null;  // a zone or a mask
  let drawing = null;  // {kind: "zone" | "privacy" | "motion", points}
  let drag = null;  // {item, point (index, or -1 for the whole polygon), start, original}
  let pressed = null;  // the corner last pressed ({item, point}): a double-click deletes it

  const shapes = () => [
    ...zones.map((zone) => ({ kind: "zone", key: zone.id, item: zone })),
    ...MASKS.flatMap((kind) => masks[kind].map((mask, i) => ({ kind, key: `${kind}-${i + 1}`, item: mask })))];
  const attrs = (shape) => (shape.kind === "zone" ? { "data-zone": shape.key } : { "data-mask": shape.key });

  const width = camera.snapshot_width || 1280;
  const height = camera.snapshot_height || 720;
  const canvas = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "zone-canvas" },
    svg("image", { href: `/api/snapshots/${camera.latest_snapshot_sha256}`, width, height, preserveAspectRatio: "none" }));
  const layer = svg("g");
  canvas.append(layer);
  const radius = Math.max(width, height) / 120;
  const status = h("p", { class: "message", role: "status" }, t("zones.version", { v: config.version }));
  const errors = h("ul", { class: "error schema-errors", role: "alert" });
  const list = h("ul", { class: "zone-list" });
  const panel = h("div", { class: "zone-panel" });
  const tools = h("div", { class: "actions zone-tools" });

  const toNormalised = (event) => {
    const box = canvas.getBoundingClientRect();
    return [clamp((event.clientX - box.left) / box.width), clamp((event.clientY - box.top) / box.height)];
  };
  const pixels = (polygon) => polygon.map(([x, y]) => `${x * width},${y * height}`).join(" ");
  const shapeName = (shape) => (shape.kind === "zone" ? shape.item.name || shape.item.id : `${t(`zones.mask.${shape.kind}`)} ${shape.key.split("-").pop()}`);

  const drawCanvas = () => {
    clear(layer);
    for (const shape of shapes()) {
      const { item } = shape;
      const kindClass = shape.kind === "zone" ? "zone" : `mask mask-${shape.kind}`;
      layer.append(svg("polygon", { points: pixels(item.polygon), class: `${kindClass} editable${item === selected ? " selected" : ""}`, ...attrs(shape),
        onpointerdown: (e) => {
          if (drawing) return;
          e.stopPropagation();
          pressed = null;
          if (selected !== item) select(item);
          drag = { item, point: -1, start: toNormalised(e), original: structuredClone(item.polygon) };
          canvas.setPointerCapture(e.pointerId);
        } }));
      item.polygon.forEach(([x, y], p) => layer.append(svg("circle", { cx: x * width, cy: y * height, r: radius,
        class: "handle", ...attrs(shape), "data-point": p,
        onpointerdown: (e) => {
          if (drawing) return;
          e.stopPropagation();
          drag = { item, point: p };
          pressed = { item, point: p };
          canvas.setPointerCapture(e.pointerId);
        } })));
      const [lx, ly] = item.polygon[0];
      // Above its first corner, or below it when that corner is at the top of the frame.
      layer.append(svg("text", { x: lx * width + 6, y: ly * height < 40 ? ly * height + 34 : ly * height - 6, class: "zone-label d" }, shapeName(shape)));
    }
    if (drawing) {
      layer.append(svg("polyline", { points: pixels(drawing.points), class: "zone drawing" }));
      drawing.points.forEach(([x, y], p) => layer.append(svg("circle", { cx: x * width, cy: y * height, r: radius, class: "handle new", "data-point": p })));
    }
  };

  canvas.addEventListener("pointerdown", (e) => {
    if (!drawing) return;
    drawing.points.push(toNormalised(e));
    drawTools();
    drawCanvas();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const [x, y] = toNormalised(e);
    const { polygon } = drag.item;
    if (drag.point >= 0) polygon[drag.point] = [x, y];
    else {
      const [dx, dy] = [x - drag.start[0], y - drag.start[1]];
      drag.original.forEach(([ox, oy], i) => { polygon[i] = [clamp(ox + dx), clamp(oy + dy)]; });
    }
    drawCanvas();
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  // On the canvas, not the corner: the pointer capture sends the clicks here, and a drag redraws the corners.
  canvas.addEventListener("dblclick", () => {
    if (drawing || !pressed) return;
    const { polygon } = pressed.item;
    if (polygon.length <= 3) status.textContent = t("zones.min_points");
    else polygon.splice(pressed.point, 1);
    pressed = null;
    drawCanvas();
  });

  const newId = () => {
    let n = zones.length + 1;
    while (zones.some((zone) => zone.id === `zone-${n}`)) n += 1;
    return `zone-${n}`;
  };
  const newRule = (type) => withDefaults(schema, ruleModels[type]);
  const ruleTypeName = (type) => tOr(`rule.${type}`, ruleModels[type].title || type);

  const finish = () => {
    const { kind, points } = drawing;
    drawing = null;
    if (kind === "zone") {
      zones.push({ ...withDefaults(schema, zoneModel), id: newId(), polygon: points, rules: [newRule(Object.keys(ruleModels)[0])] });
      select(zones[zones.length - 1]);
    } else {
      masks[kind].push({ polygon: points });
      select(masks[kind][masks[kind].length - 1]);
    }
  };

  const drawTools = () => {
    clear(tools);
    if (drawing) {
      tools.append(h("span", { class: "muted" }, t("zones.drawing", { n: drawing.points.length })),
        h("button", { type: "button", class: "primary finish-zone", disabled: drawing.points.length < 3, onclick: finish }, t("zones.finish")),
        h("button", { type: "button", class: "cancel-zone", onclick: () => { drawing = null; redraw(); } }, t("zones.cancel")));
      return;
    }
    for (const kind of ["zone", ...MASKS]) {
      tools.append(h("button", { type: "button", class: kind === "zone" ? "new-zone" : `new-mask new-${kind}-mask`, onclick: () => {
        drawing = { kind, points: [] };
        redraw();
      } }, t(`zones.new.${kind}`)));
    }
  };

  const remove = (shape) => {
    const owner = shape.kind === "zone" ? zones : masks[shape.kind];
    owner.splice(owner.indexOf(shape.item), 1);
    if (selected === shape.item) selected = null;
    redraw();
  };

  const drawList = () => {
    clear(list);
    for (const shape of shapes()) {
      list.append(h("li", { class: `${shape.kind === "zone" ? "" : `mask-${shape.kind}`} ${shape.item === selected ? "selected" : ""}`.trim(), dataset: shape.kind === "zone" ? { zone: shape.key } : { mask: shape.key } },
        h("button", { type: "button", class: "link select-zone", onclick: () => select(shape.item) }, shape.kind === "zone" ? data(shapeName(shape)) : shapeName(shape)),
        " ", shape.kind === "zone" ? shape.item.rules.map((rule) => h("span", { class: "tag" }, ruleTypeName(rule.type))) : null,
        h("button", { type: "button", class: "delete-zone", onclick: () => remove(shape) }, t("zones.delete"))));
    }
  };

  const ruleForm = (zone, r) => {
    const rule = zone.rules[r];
    const box = h("fieldset", { class: "rule", dataset: { rule: r } });
    const type = h("select", { name: "rule_type", onchange: () => {
      zone.rules[r] = newRule(type.value);
      drawPanel();
      drawList();
    } }, Object.keys(ruleModels).map((name) => h("option", { value: name, selected: name === rule.type }, ruleTypeName(name))));
    box.append(h("legend", {}, t("zones.rule"), " ", type,
      zone.rules.length > 1 ? h("button", { type: "button", class: "remove-rule", onclick: () => { zone.rules.splice(r, 1); drawPanel(); } }, t("zones.remove_rule")) : null),
      ...fields(schema, ruleModels[rule.type], rule, []));
    return box;
  };

  const drawPanel = () => {
    clear(panel);
    const shape = shapes().find((s) => s.item === selected);
    if (!shape) {
      panel.append(h("p", { class: "muted" }, t("zones.pick")));
      return;
    }
    if (shape.kind !== "zone") {
      panel.append(h("p", { class: "muted mask-help" }, t(`zones.mask.${shape.kind}.help`)));
      return;
    }
    const zone = shape.item;
    // The zone's own settings (id, name, inertia, ...) from its schema; the polygon is the drawing.
    panel.append(h("div", { class: "zone-settings", dataset: { zone: zone.id } }, ...fields(schema, zoneModel, zone, [], ["polygon", "rules"])),
      ...zone.rules.map((_, r) => ruleForm(zone, r)),
      h("button", { type: "button", class: "add-rule", onclick: () => { zone.rules.push(newRule(Object.keys(ruleModels)[0])); drawPanel(); } }, t("zones.add_rule")));
    for (const input of panel.querySelectorAll(".zone-settings input")) input.addEventListener("change", () => { drawList(); drawCanvas(); });
  };

  function select(item) {
    selected = item;
    redraw();
  }
  function redraw() {
    clear(errors);  // what the last save said no longer describes what is being edited
    drawCanvas();
    drawTools();
    drawList();
    drawPanel();
  }

  const save = h("button", { type: "button", class: "primary save-zones", onclick: async () => {
    clear(errors);
    const polygon = (points) => points.map(([x, y]) => [round(x), round(y)]);
    for (const zone of zones) zone.polygon = polygon(zone.polygon);
    const body = { zones, masks: Object.fromEntries(MASKS.map((kind) => [kind, masks[kind].map((mask) => polygon(mask.polygon))])) };
    const problems = [...check(schema, schema.properties.zones, body.zones, "zones"), ...check(schema, schema.properties.masks, body.masks, "masks")];
    if (problems.length) {
      errors.append(...problems.map((problem) => h("li", {}, problem)));
      status.textContent = t("zones.invalid");
      return;
    }
    try {
      const saved = await put(base, body);
      status.textContent = t(saved.published ? "zones.saved_published" : "zones.saved", { v: saved.version });
      status.dataset.version = saved.version;
    } catch (error) {
      status.textContent = `${t("zones.error")} ${error.message}`;
    }
  } }, t("zones.save"));
  redraw();
  return h("section", { class: "zone-editor" }, h("h3", {}, t("zones.heading"), " ", data(camera.camera_id)),
    h("p", { class: "muted" }, t("zones.help")), tools,
    h("div", { class: "zone-workspace" }, canvas, h("div", { class: "zone-side" }, list, panel)),
    h("div", { class: "actions" }, save), errors, status);
}
