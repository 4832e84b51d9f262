// Result presentation shared by `espace fhirpath` and the tests.
#include <cstdio>

#include "engine.h"

namespace espace::fhirpath {

using fhir::Node;

namespace {

void json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

void primitive_json(std::string& out, const Node& n) {
  if (!n.has_value) { out += "null"; return; }
  if (n.type && n.type->json_value != fhir::JsonValueKind::String) out += n.value;
  else json_string(out, n.value);
}

void node_json(std::string& out, const Node& n);

// Children grouped by JSON name, arrays where the element repeats, and the
// `_name` companion for primitives carrying id/extensions.
void object_json(std::string& out, const Node& n) {
  out.push_back('{');
  bool first = true;
  if (n.is_resource()) {
    out += "\"resourceType\":";
    json_string(out, n.type->name);
    first = false;
  }
  const auto& kids = n.children;
  for (size_t i = 0; i < kids.size();) {
    size_t j = i;
    while (j < kids.size() && kids[j].name == kids[i].name) ++j;
    const Node& c = kids[i];
    bool array = c.def && c.def->is_array();
    bool primitive = c.is_primitive();
    bool any_value = false, any_ext = false;
    for (size_t k = i; k < j; ++k) {
      any_value = any_value || kids[k].has_value;
      any_ext = any_ext || !kids[k].children.empty();
    }
    if (!primitive || any_value) {
      if (!first) out.push_back(',');
      first = false;
      json_string(out, c.name);
      out.push_back(':');
      if (array) out.push_back('[');
      for (size_t k = i; k < j; ++k) {
        if (k > i) out.push_back(',');
        if (primitive) primitive_json(out, kids[k]);
        else node_json(out, kids[k]);
      }
      if (array) out.push_back(']');
    }
    if (primitive && any_ext) {
      if (!first) out.push_back(',');
      first = false;
      json_string(out, "_" + std::string(c.name));
      out.push_back(':');
      if (array) out.push_back('[');
      for (size_t k = i; k < j; ++k) {
        if (k > i) out.push_back(',');
        if (kids[k].children.empty()) out += "null";
        else object_json(out, Node{kids[k].def, nullptr, {}, {}, false, kids[k].children});
      }
      if (array) out.push_back(']');
    }
    i = j;
  }
  out.push_back('}');
}

void node_json(std::string& out, const Node& n) {
  if (n.is_primitive()) primitive_json(out, n);
  else object_json(out, n);
}

}  // namespace

std::string output_type(const Value& v) {
  switch (v.kind()) {
    case ValueKind::Node: return v.type_name();
    case ValueKind::Boolean: return "boolean";
    case ValueKind::Integer: return "integer";
    case ValueKind::Decimal: return "decimal";
    case ValueKind::String: return "string";
    case ValueKind::Date: return "date";
    case ValueKind::DateTime: return "dateTime";
    case ValueKind::Time: return "time";
    case ValueKind::Quantity: return "Quantity";
    case ValueKind::TypeInfo: return "TypeInfo";
  }
  return {};
}

std::string output_json(const Value& v) {
  std::string out;
  switch (v.kind()) {
    case ValueKind::Node: node_json(out, *v.node()); break;
    case ValueKind::Boolean: out = v.as_bool() ? "true" : "false"; break;
    case ValueKind::Integer: out = std::to_string(v.as_int()); break;
    case ValueKind::Decimal: out = v.as_decimal().to_string(); break;
    case ValueKind::String: json_string(out, v.as_string()); break;
    case ValueKind::Date:
    case ValueKind::DateTime:
    case ValueKind::Time: json_string(out, v.as_temporal().to_string()); break;
    case ValueKind::Quantity: {
      Quantity q = v.as_quantity();
      out = "{\"value\":" + q.value.to_string() + ",\"unit\":";
      json_string(out, q.unit);
      if (!q.calendar) out += ",\"system\":\"http://unitsofmeasure.org\",\"code\":", json_string(out, q.unit);
      out += "}";
      break;
    }
    case ValueKind::TypeInfo: {
      size_t dot = v.as_string().find('.');
      out = "{\"namespace\":";
      json_string(out, v.as_string().substr(0, dot));
      out += ",\"name\":";
      json_string(out, v.as_string().substr(dot + 1));
      out += "}";
      break;
    }
  }
  return out;
}

std::string display(const Value& v) {
  auto s = to_system(v);
  if (!s) return v.is_node() ? output_json(v) : std::string();
  switch (s->kind()) {
    case ValueKind::Boolean: return s->as_bool() ? "true" : "false";
    case ValueKind::Integer: return std::to_string(s->as_int());
    case ValueKind::Decimal: return s->as_decimal().to_string();
    case ValueKind::String: return s->as_string();
    case ValueKind::Date:
    case ValueKind::DateTime: return "@" + s->as_temporal().to_string();
    case ValueKind::Time: return "@T" + s->as_temporal().to_string();
    case ValueKind::Quantity: return s->as_quantity().to_string();
    case ValueKind::TypeInfo: return s->as_string();
    case ValueKind::Node: return output_json(*s);
  }
  return {};
}

}  // namespace espace::fhirpath
