// Forms built from a JSON Schema (the edge's own zone, rule and mask models, at /api/cameras/zone-schema)
// and the same schema's check before a save. A setting added to a rule model on the edge shows up here
// with no console change (labelled by its schema title until the catalogues name it), and a value the
// edge would refuse is named, with its path, before it leaves the browser; the server checks again with
// the models themselves (what a schema cannot say, such as unique zone ids, is the server's 422).
import { clear, h } from "../dom.js";
import { t, tOr } from "../i18n.js";

export function resolve(root, schema) {
  let s = schema;
  while (s && s.$ref) s = root.$defs[s.$ref.split("/").pop()];
  return s;
}

// anyOf [X, null] (an optional setting) -> X, nullable.
function unwrap(root, schema) {
  const s = resolve(root, schema);
  if (s.anyOf) {
    const others = s.anyOf.filter((o) => o.type !== "null");
    if (others.length === 1 && others.length < s.anyOf.length) return { schema: resolve(root, others[0]), nullable: true };
  }
  return { schema: s, nullable: false };
}

// The zone model and the rule models by their type: {zone, rules: {loitering: schema, ...}}.
export function models(root) {
  const zone = resolve(root, root.properties.zones.items);
  const options = zone.properties.rules.items.oneOf || zone.properties.rules.items.anyOf;
  const rules = {};
  for (const option of options) {
    const rule = resolve(root, option);
    rules[rule.properties.type.const] = rule;
  }
  return { zone, rules };
}

// An object of ``schema`` with every default filled in (and its const ``type``); required settings without
// a default stay absent, so the check asks for them.
export function withDefaults(root, schema) {
  const value = {};
  for (const [name, prop] of Object.entries(schema.properties)) {
    const s = resolve(root, prop);
    if (s && s.const !== undefined) value[name] = s.const;
    else if ("default" in prop) value[name] = structuredClone(prop.default);
  }
  return value;
}

function read(schema, nullable, input) {
  if (input.type === "checkbox") return input.checked;
  const raw = input.value.trim();
  if (raw === "") return nullable ? null : undefined;
  if (schema.type === "number" || schema.type === "integer") return Number(raw);
  if (schema.type === "array") {
    const item = schema.items || {};
    return raw.split(/[,，]/).map((s) => s.trim()).filter(Boolean)
      .map((s) => (item.type === "number" || item.type === "integer" ? Number(s) : s));
  }
  return raw;
}

const label = (name, schema, prop) => tOr(`setting.${name}`, prop.title || schema.title || name);

// One input per setting of ``schema`` (skipping ``skip``), editing ``value`` in place.
export function fields(root, schema, value, path, skip = []) {
  const out = [];
  for (const [name, prop] of Object.entries(schema.properties)) {
    if (skip.includes(name)) continue;
    const field = fieldFor(root, name, prop, value, [...path, name]);
    if (field) out.push(field);
  }
  return out;
}

function fieldFor(root, name, prop, owner, path) {
  const { schema, nullable } = unwrap(root, prop);
  if (schema.const !== undefined) return null;  // a rule's type: chosen above the form
  const help = prop.description || schema.description || "";
  const id = path.join(".");
  const set = (v) => {
    if (v === undefined) delete owner[name];
    else owner[name] = v;
  };
  if (schema.type === "object") {  // a nested model (a courier rule's gate), optional when nullable
    const inner = h("div", { class: "nested" });
    const draw = () => {
      clear(inner);
      if (owner[name]) inner.append(...fields(root, schema, owner[name], path));
    };
    const toggle = nullable ? h("input", { type: "checkbox", name: id, checked: Boolean(owner[name]), onchange: (e) => {
      set(e.target.checked ? withDefaults(root, schema) : null);
      draw();
    } }) : null;
    if (!nullable && !owner[name]) set(withDefaults(root, schema));
    draw();
    return h("fieldset", { class: "setting", dataset: { path: id } }, h("legend", { title: help }, toggle, " ", label(name, schema, prop)), inner);
  }
  const value = owner[name];
  let input;
  if (schema.enum) {
    input = h("select", {}, [...(nullable ? [""] : []), ...schema.enum].map((v) => h("option", { value: v, selected: v === value },
      v === "" ? "—" : tOr(`choice.${v}`, String(v)))));
  } else if (schema.type === "boolean") {
    input = h("input", { type: "checkbox", checked: Boolean(value) });
  } else if (schema.type === "number" || schema.type === "integer") {
    input = h("input", { type: "number", step: schema.type === "integer" ? 1 : "any", value: value ?? "",
      min: schema.minimum ?? schema.exclusiveMinimum, max: schema.maximum ?? schema.exclusiveMaximum });
  } else if (schema.type === "array") {
    input = h("input", { type: "text", value: (value || []).join(", "), placeholder: t("schema.list_hint") });
  } else {
    input = h("input", { type: "text", value: value ?? "", placeholder: nullable ? "—" : "" });
  }
  input.name = id;
  const update = () => set(read(schema, nullable, input));
  input.addEventListener("input", update);
  input.addEventListener("change", update);
  return h("label", { class: `setting setting-${schema.type || "choice"}`, title: help }, h("span", {}, label(name, schema, prop)), " ", input);
}

const TYPES = {
  null: (v) => v === null,
  boolean: (v) => typeof v === "boolean",
  string: (v) => typeof v === "string",
  number: (v) => typeof v === "number" && Number.isFinite(v),
  integer: (v) => Number.isInteger(v),
  array: (v) => Array.isArray(v),
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
};

// Every way ``value`` breaks ``schema`` (the subset of JSON Schema pydantic writes), as "path: why".
export function check(root, schema, value, path) {
  const s = resolve(root, schema);
  const fail = (key, params = {}) => [`${path}: ${t(`schema.${key}`, params)}`];
  if (s.anyOf) {
    const tries = s.anyOf.map((option) => check(root, option, value, path));
    return tries.some((errors) => !errors.length) ? [] : tries.find((errors) => errors.length) || [];
  }
  if (s.oneOf) {  // the rules: a discriminated union on "type"
    const match = s.oneOf.map((option) => resolve(root, option)).find((option) => value && option.properties.type.const === value.type);
    if (!match) return fail("enum", { values: s.oneOf.map((o) => resolve(root, o).properties.type.const).join(", ") });
    return check(root, match, value, path);
  }
  if (s.const !== undefined && value !== s.const) return fail("enum", { values: s.const });
  if (s.enum && !s.enum.includes(value)) return fail("enum", { values: s.enum.join(", ") });
  if (s.type && !TYPES[s.type](value)) return fail("type", { type: t(`schema.type.${s.type}`) });
  if (s.type === "number" || s.type === "integer") {
    if (s.minimum !== undefined && value < s.minimum) return fail("minimum", { n: s.minimum });
    if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum) return fail("exclusive_minimum", { n: s.exclusiveMinimum });
    if (s.maximum !== undefined && value > s.maximum) return fail("maximum", { n: s.maximum });
    if (s.exclusiveMaximum !== undefined && value >= s.exclusiveMaximum) return fail("exclusive_maximum", { n: s.exclusiveMaximum });
  }
  if (s.type === "string") {
    if (s.minLength !== undefined && value.length < s.minLength) return fail("min_length", { n: s.minLength });
    if (s.maxLength !== undefined && value.length > s.maxLength) return fail("max_length", { n: s.maxLength });
    if (s.pattern && !new RegExp(s.pattern, "u").test(value)) return fail("pattern", { pattern: s.pattern });
  }
  const errors = [];
  if (s.type === "array") {
    if (s.minItems !== undefined && value.length < s.minItems) return fail("min_items", { n: s.minItems });
    if (s.maxItems !== undefined && value.length > s.maxItems) return fail("max_items", { n: s.maxItems });
    value.forEach((item, i) => {
      const itemSchema = s.prefixItems ? s.prefixItems[i] : s.items;
      if (itemSchema) errors.push(...check(root, itemSchema, item, `${path}[${i}]`));
    });
  }
  if (s.type === "object") {
    for (const name of s.required || []) if (!(name in value)) errors.push(`${path}.${name}: ${t("schema.required")}`);
    for (const [name, item] of Object.entries(value)) {
      if (s.properties && s.properties[name]) errors.push(...check(root, s.properties[name], item, `${path}.${name}`));
      else if (s.additionalProperties === false) errors.push(`${path}.${name}: ${t("schema.unknown")}`);
    }
  }
  return errors;
}
