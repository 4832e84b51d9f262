#include "registry.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <atomic>
#include <mutex>
#include <set>
#include <unordered_map>

#include "../common.h"
#include "espace/fhir/data_files.h"

namespace espace::interactions::search {

namespace {

using fhirpath::Value;
using fhirpath::ValueKind;
using storage::IndexEntry;

// Bounds on what one resource may add to the index.
constexpr size_t kMaxRowsPerResource = 20000;

ParamType parse_type(std::string_view t) {
  if (t == "number") return ParamType::Number;
  if (t == "date") return ParamType::Date;
  if (t == "string") return ParamType::String;
  if (t == "token") return ParamType::Token;
  if (t == "reference") return ParamType::Reference;
  if (t == "composite") return ParamType::Composite;
  if (t == "quantity") return ParamType::Quantity;
  if (t == "uri") return ParamType::Uri;
  return ParamType::Special;
}

// Splits an expression at its top-level '|' (outside parentheses, brackets and quotes).
std::vector<std::string> split_union(std::string_view e) {
  std::vector<std::string> parts;
  int depth = 0;
  char quote = 0;
  size_t start = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    char c = e[i];
    if (quote) {
      if (c == '\\') ++i;
      else if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '`' || c == '"') quote = c;
    else if (c == '(' || c == '[' || c == '{') ++depth;
    else if (c == ')' || c == ']' || c == '}') --depth;
    else if (c == '|' && depth == 0) {
      parts.emplace_back(e.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.emplace_back(e.substr(start));
  for (auto& p : parts) {
    size_t a = p.find_first_not_of(" \t\r\n");
    size_t b = p.find_last_not_of(" \t\r\n");
    p = a == std::string::npos ? std::string() : p.substr(a, b - a + 1);
  }
  return parts;
}

// The type name an expression part starts with ("Patient" in "(Patient.deceased as boolean)").
std::string leading_name(std::string_view part) {
  size_t i = 0;
  while (i < part.size() && (part[i] == '(' || part[i] == ' ')) ++i;
  size_t j = i;
  while (j < part.size() && (std::isalnum(static_cast<unsigned char>(part[j])) || part[j] == '_')) ++j;
  return std::string(part.substr(i, j - i));
}

void add_row(std::vector<IndexEntry>* out, const std::string& param, const char* kind, std::string system,
             std::string value, double low = 0, double high = 0) {
  if (out->size() >= kMaxRowsPerResource) return;
  IndexEntry e;
  e.param = param;
  e.kind = kind;
  e.system = std::move(system);
  e.value = std::move(value);
  e.low = low;
  e.high = high;
  out->push_back(std::move(e));
}

std::string clip(std::string_view s) {
  if (s.size() <= kMaxIndexedText) return std::string(s);
  size_t n = kMaxIndexedText;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // whole UTF-8 characters
  return std::string(s.substr(0, n));
}

void add_string(std::vector<IndexEntry>* out, const std::string& param, std::string_view text) {
  if (text.empty()) return;
  add_row(out, param, "string", clip(text), clip(normalize_string(text)));
}

void add_text(std::vector<IndexEntry>* out, const std::string& param, std::string_view text) {
  if (text.empty()) return;
  add_row(out, param, "text", "", clip(normalize_string(text)));
}

std::string type_name(const fhir::Node& n) { return n.type ? n.type->name : std::string(); }

bool is_date_type(std::string_view t) { return t == "date" || t == "dateTime" || t == "instant"; }
bool is_quantity_type(std::string_view t) {
  return t == "Quantity" || t == "Age" || t == "Duration" || t == "Count" || t == "Distance" ||
         t == "SimpleQuantity" || t == "MoneyQuantity";
}

void add_coding(std::vector<IndexEntry>* out, const std::string& param, const fhir::Node& coding) {
  std::string_view code = coding.child_value("code");
  if (!code.empty()) add_row(out, param, "token", std::string(coding.child_value("system")), std::string(code));
  add_text(out, param, coding.child_value("display"));
}

void add_date(std::vector<IndexEntry>* out, const std::string& param, std::string_view low_text,
              std::string_view high_text) {
  int64_t lo = 0, hi = 0, lo2 = 0, hi2 = 0;
  bool has_low = !low_text.empty() && date_range(low_text, &lo, &hi);
  bool has_high = !high_text.empty() && date_range(high_text, &lo2, &hi2);
  if (!has_low && !has_high) return;
  // An open end of a Period stretches to the far past or future.
  constexpr double kFar = 9.0e18;
  add_row(out, param, "date", "", "", has_low ? static_cast<double>(lo) : -kFar,
          has_high ? static_cast<double>(hi2) : kFar);
}

void add_reference_text(std::vector<IndexEntry>* out, const std::string& param, std::string_view ref) {
  if (ref.empty() || ref[0] == '#') return;  // contained resources are not searched separately
  std::string_view path = ref;
  size_t hist = path.find("/_history/");
  if (hist != std::string_view::npos) path = path.substr(0, hist);
  bool absolute = path.find("://") != std::string_view::npos || path.starts_with("urn:");
  // The last two segments "Type/id" name the target when Type is a resource type name.
  size_t slash = path.rfind('/');
  if (slash != std::string_view::npos && slash > 0) {
    size_t prev = path.rfind('/', slash - 1);
    std::string_view type = path.substr(prev == std::string_view::npos ? 0 : prev + 1,
                                        slash - (prev == std::string_view::npos ? 0 : prev + 1));
    std::string_view id = path.substr(slash + 1);
    if (!type.empty() && std::isupper(static_cast<unsigned char>(type[0])) && is_valid_id(id)) {
      add_row(out, param, "reference", std::string(type), std::string(id));
      if (!absolute) return;
    }
  }
  if (absolute) {
    std::string url(ref);
    size_t bar = url.find('|');  // canonical version suffix
    if (bar != std::string::npos) url.resize(bar);
    add_row(out, param, "reference", "", url);
  }
}

// CompartmentDefinition-*.json of the package: code -> resource type -> params.
void load_compartments(
    const std::string& dir,
    std::map<std::string, std::map<std::string, std::vector<std::string>, std::less<>>, std::less<>>* out) {
  for (const char* name : {"patient", "encounter", "practitioner", "relatedPerson", "device"}) {
    std::string path = dir + "/CompartmentDefinition-" + name + ".json";
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) continue;
    std::string text;
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && text.size() < (16u << 20)) text.append(buf, n);
    std::fclose(f);
    rapidjson::Document doc;
    doc.Parse(text.data(), text.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("code") || !doc["code"].IsString() ||
        !doc.HasMember("resource") || !doc["resource"].IsArray())
      continue;
    auto& members = (*out)[doc["code"].GetString()];
    for (auto& r : doc["resource"].GetArray()) {
      if (!r.IsObject() || !r.HasMember("code") || !r["code"].IsString() || !r.HasMember("param") ||
          !r["param"].IsArray())
        continue;
      std::vector<std::string> params;
      for (auto& p : r["param"].GetArray())
        if (p.IsString()) params.emplace_back(p.GetString());
      if (!params.empty()) members[r["code"].GetString()] = std::move(params);
    }
  }
}

}  // namespace

const char* param_type_name(ParamType t) {
  switch (t) {
    case ParamType::Number: return "number";
    case ParamType::Date: return "date";
    case ParamType::String: return "string";
    case ParamType::Token: return "token";
    case ParamType::Reference: return "reference";
    case ParamType::Composite: return "composite";
    case ParamType::Quantity: return "quantity";
    case ParamType::Uri: return "uri";
    case ParamType::Special: return "special";
  }
  return "special";
}

const Registry& Registry::get(const fhir::Definitions& defs) {
  // Every write and search asks; one process has one Definitions, so the
  // last answer is kept where readers need no lock.
  static std::atomic<const fhir::Definitions*> last_defs{nullptr};
  static std::atomic<const Registry*> last{nullptr};
  const Registry* cached = last.load(std::memory_order_acquire);
  if (cached && last_defs.load(std::memory_order_acquire) == &defs && cached->defs_ == &defs) return *cached;
  static std::mutex mutex;
  static std::unordered_map<const fhir::Definitions*, std::unique_ptr<Registry>> registries;
  std::lock_guard lock(mutex);
  auto& slot = registries[&defs];
  if (!slot) {
    slot = std::make_unique<Registry>();
    slot->build(defs);
  }
  last_defs.store(&defs, std::memory_order_release);
  last.store(slot.get(), std::memory_order_release);
  return *slot;
}

TypeOnlyResolver::TypeOnlyResolver(const fhir::Definitions& defs) {
  for (const std::string& name : defs.resource_type_names()) {
    fhir::Node n;
    n.type = defs.resource_type(name);
    n.name = n.type->name;
    stubs_.emplace(name, std::move(n));
  }
}

const fhir::Node* TypeOnlyResolver::resolve(std::string_view ref) const {
  size_t hist = ref.find("/_history/");
  if (hist != std::string_view::npos) ref = ref.substr(0, hist);
  size_t slash = ref.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return nullptr;
  size_t prev = ref.rfind('/', slash - 1);
  std::string_view type = ref.substr(prev == std::string_view::npos ? 0 : prev + 1,
                                     slash - (prev == std::string_view::npos ? 0 : prev + 1));
  auto it = stubs_.find(type);
  return it == stubs_.end() ? nullptr : &it->second;
}

namespace {

// The package's SearchParameters, then ours: a Bundle of SearchParameters in
// server/interactions/data/search-parameters.json (parameters the R4 base
// lacks, e.g. MHD's List designationType/sourceId). A code already defined
// for a type keeps the package's definition.
std::vector<std::string> all_search_parameters(const fhir::Definitions& defs) {
  std::vector<std::string> all = defs.search_parameters_json();
  std::string text;
  if (!fhir::read_data_file("server/interactions/data/search-parameters.json", &text)) return all;
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("entry") || !doc["entry"].IsArray()) return all;
  for (auto& entry : doc["entry"].GetArray()) {
    if (!entry.IsObject() || !entry.HasMember("resource") || !entry["resource"].IsObject()) continue;
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    entry["resource"].Accept(w);
    all.emplace_back(buf.GetString(), buf.GetSize());
  }
  return all;
}

}  // namespace

Status Registry::build(const fhir::Definitions& defs) {
  const std::vector<std::string> search_parameters = all_search_parameters(defs);
  defs_ = &defs;
  resolver_ = std::make_unique<TypeOnlyResolver>(defs);
  std::vector<std::string> types = defs.resource_type_names();
  std::set<std::string, std::less<>> type_set(types.begin(), types.end());
  // Composite components name other parameters by URL; their types come from there.
  std::map<std::string, ParamType> type_of_url;
  for (const std::string& text : search_parameters) {
    rapidjson::Document doc;
    doc.Parse(text.data(), text.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("url") || !doc["url"].IsString() ||
        !doc.HasMember("type") || !doc["type"].IsString())
      continue;
    type_of_url[doc["url"].GetString()] = parse_type(doc["type"].GetString());
  }
  for (const std::string& text : search_parameters) {
    rapidjson::Document doc;
    doc.Parse(text.data(), text.size());
    if (doc.HasParseError() || !doc.IsObject()) continue;
    auto str = [&](const char* k) -> std::string {
      auto it = doc.FindMember(k);
      return it != doc.MemberEnd() && it->value.IsString() ? it->value.GetString() : std::string();
    };
    auto list = [&](const char* k) {
      std::vector<std::string> out;
      auto it = doc.FindMember(k);
      if (it != doc.MemberEnd() && it->value.IsArray())
        for (auto& v : it->value.GetArray())
          if (v.IsString()) out.emplace_back(v.GetString());
      return out;
    };
    std::string code = str("code");
    std::vector<std::string> bases = list("base");
    if (code.empty() || bases.empty()) continue;
    ParamType type = parse_type(str("type"));
    std::vector<std::string> parts = split_union(str("expression"));
    std::vector<std::string> targets = list("target");

    std::vector<std::string> applies;
    for (const std::string& base : bases) {
      if (base == "Resource") {
        applies = types;
        break;
      }
      if (base == "DomainResource") {
        for (const std::string& t : types)
          if (t != "Bundle" && t != "Binary" && t != "Parameters") applies.push_back(t);
        break;
      }
      if (type_set.count(base)) applies.push_back(base);
    }
    // Resource-level parameters share one compiled expression across types.
    std::shared_ptr<const fhirpath::Expression> shared_expr;
    for (const std::string& rtype : applies) {
      auto& params = by_type_[rtype];
      if (params.count(code)) continue;  // _id appears twice in the package
      SearchParamDef def;
      def.code = code;
      def.url = str("url");
      def.type = type;
      def.targets = targets;
      std::string expr;
      bool generic = false;
      for (const std::string& p : parts) {
        if (p.empty()) continue;
        std::string lead = leading_name(p);
        bool typed = type_set.count(lead) || lead == "Resource" || lead == "DomainResource";
        if (typed && lead != rtype && lead != "Resource" && lead != "DomainResource") continue;
        if (!typed || lead == "Resource" || lead == "DomainResource") generic = true;
        if (!expr.empty()) expr += " | ";
        expr += p;
      }
      if (type == ParamType::Composite && !expr.empty()) {
        auto comps = doc.FindMember("component");
        bool ok = comps != doc.MemberEnd() && comps->value.IsArray();
        std::vector<SearchParamDef::Component> components;
        if (ok) {
          for (auto& c : comps->value.GetArray()) {
            if (!c.IsObject() || !c.HasMember("definition") || !c["definition"].IsString() ||
                !c.HasMember("expression") || !c["expression"].IsString()) {
              ok = false;
              break;
            }
            SearchParamDef::Component comp;
            auto t = type_of_url.find(c["definition"].GetString());
            comp.type = t == type_of_url.end() ? ParamType::Special : t->second;
            fhirpath::CompileOptions opts;
            opts.definitions = &defs;
            std::string comp_expr = c["expression"].GetString();
            // R4's code-value-date says as(DateTime), the System type, where the
            // FHIR element is a dateTime: read it as the FHIR type it means.
            for (size_t at = comp_expr.find("as(DateTime)"); at != std::string::npos; at = comp_expr.find("as(DateTime)"))
              comp_expr.replace(at, 12, "as(dateTime)");
            if (Status s = fhirpath::compile(comp_expr, opts, &comp.expression); !s) {
              failures_.push_back(rtype + "." + code + " component: " + s.message());
              ok = false;
              break;
            }
            components.push_back(std::move(comp));
          }
        }
        if (ok && components.size() == 2 && components[0].type == ParamType::Token) {
          fhirpath::CompileOptions opts;
          opts.definitions = &defs;
          std::shared_ptr<const fhirpath::Expression> compiled;
          if (Status s = fhirpath::compile(expr, opts, &compiled); s) {
            def.expression = compiled;
            def.components = std::move(components);
          } else {
            failures_.push_back(rtype + "." + code + ": " + s.message());
          }
        }
      } else if (!expr.empty() && type != ParamType::Composite && type != ParamType::Special) {
        if (generic && shared_expr && shared_expr->text() == expr) {
          def.expression = shared_expr;
        } else {
          fhirpath::CompileOptions opts;
          opts.definitions = &defs;
          std::shared_ptr<const fhirpath::Expression> compiled;
          Status s = fhirpath::compile(expr, opts, &compiled);
          if (!s) {
            failures_.push_back(rtype + "." + code + ": " + s.message());
            continue;
          }
          def.expression = compiled;
          if (generic) shared_expr = compiled;
        }
      }
      params.emplace(code, std::move(def));
    }
  }
  load_compartments(defs.package_dir(), &compartments_);
  return Status::ok();
}

const std::map<std::string, std::vector<std::string>, std::less<>>* Registry::compartment(
    std::string_view compartment_type) const {
  auto it = compartments_.find(compartment_type);
  return it == compartments_.end() ? nullptr : &it->second;
}

const SearchParamDef* Registry::find(std::string_view type, std::string_view code) const {
  auto t = by_type_.find(type);
  if (t == by_type_.end()) return nullptr;
  auto p = t->second.find(code);
  return p == t->second.end() ? nullptr : &p->second;
}

const std::map<std::string, SearchParamDef, std::less<>>* Registry::params_of(std::string_view type) const {
  auto t = by_type_.find(type);
  return t == by_type_.end() ? nullptr : &t->second;
}

namespace {

void index_value(const SearchParamDef& def, const Value& v, std::vector<IndexEntry>* out) {
  const std::string& param = def.code;
  if (!v.is_node()) {
    // System values computed by the expression (e.g. a boolean from exists()).
    switch (v.kind()) {
      case ValueKind::Boolean:
        if (def.type == ParamType::Token) add_row(out, param, "token", "", v.as_bool() ? "true" : "false");
        break;
      case ValueKind::String:
        if (def.type == ParamType::String) add_string(out, param, v.as_string());
        else if (def.type == ParamType::Token) add_row(out, param, "token", "", v.as_string());
        else if (def.type == ParamType::Uri) add_row(out, param, "uri", "", v.as_string());
        else if (def.type == ParamType::Reference) add_reference_text(out, param, v.as_string());
        break;
      case ValueKind::Integer:
      case ValueKind::Decimal: {
        double d = v.kind() == ValueKind::Integer ? static_cast<double>(v.as_int()) : v.as_decimal().to_double();
        if (def.type == ParamType::Number || def.type == ParamType::Quantity) add_row(out, param, "number", "", "", d, d);
        break;
      }
      case ValueKind::Date:
      case ValueKind::DateTime:
        if (def.type == ParamType::Date) add_date(out, param, v.as_temporal().to_string(), v.as_temporal().to_string());
        break;
      default: break;
    }
    return;
  }
  const fhir::Node& n = *v.node();
  std::string t = type_name(n);
  switch (def.type) {
    case ParamType::String:
      if (t == "HumanName") {
        add_string(out, param, n.child_value("text"));
        for (const char* part : {"family", "given", "prefix", "suffix"})
          n.for_each_child(part, [&](const fhir::Node& c) { add_string(out, param, c.value); });
      } else if (t == "Address") {
        add_string(out, param, n.child_value("text"));
        for (const char* part : {"line", "city", "district", "state", "postalCode", "country"})
          n.for_each_child(part, [&](const fhir::Node& c) { add_string(out, param, c.value); });
      } else if (n.has_value) {
        add_string(out, param, n.value);
      }
      break;
    case ParamType::Token:
      if (t == "Identifier") {
        std::string_view value = n.child_value("value");
        if (!value.empty()) add_row(out, param, "token", std::string(n.child_value("system")), std::string(value));
        if (const fhir::Node* ty = n.child("type")) {
          add_text(out, param, ty->child_value("text"));
          ty->for_each_child("coding", [&](const fhir::Node& c) {
            if (!value.empty() && !c.child_value("code").empty())
              add_row(out, param, "of-type",
                      std::string(c.child_value("system")) + "|" + std::string(c.child_value("code")),
                      std::string(value));
          });
        }
      } else if (t == "CodeableConcept") {
        add_text(out, param, n.child_value("text"));
        n.for_each_child("coding", [&](const fhir::Node& c) { add_coding(out, param, c); });
      } else if (t == "Coding") {
        add_coding(out, param, n);
      } else if (t == "ContactPoint") {
        std::string_view value = n.child_value("value");
        if (!value.empty()) add_row(out, param, "token", "", std::string(value));
      } else if (n.has_value) {
        add_row(out, param, "token", "", n.value);
      }
      break;
    case ParamType::Reference:
      if (t == "Reference") {
        add_reference_text(out, param, n.child_value("reference"));
        if (const fhir::Node* ident = n.child("identifier")) {
          std::string_view value = ident->child_value("value");
          if (!value.empty())
            add_row(out, param, "ref-identifier", std::string(ident->child_value("system")), std::string(value));
        }
      } else if (n.has_value) {
        add_reference_text(out, param, n.value);  // canonical / uri
      }
      break;
    case ParamType::Date:
      if (t == "Period") {
        add_date(out, param, n.child_value("start"), n.child_value("end"));
      } else if (t == "Timing") {
        n.for_each_child("event", [&](const fhir::Node& e) { add_date(out, param, e.value, e.value); });
      } else if (n.has_value && is_date_type(t)) {
        add_date(out, param, n.value, n.value);
      }
      break;
    case ParamType::Number:
    case ParamType::Quantity: {
      auto number = [](std::string_view s, double* d) {
        if (s.empty()) return false;
        char* end = nullptr;
        std::string tmp(s);
        *d = std::strtod(tmp.c_str(), &end);
        return end && *end == 0 && std::isfinite(*d);
      };
      double d = 0;
      if (n.has_value && number(n.value, &d)) {
        add_row(out, param, "number", "", "", d, d);
      } else if (is_quantity_type(t) && number(n.child_value("value"), &d)) {
        std::string system(n.child_value("system"));
        std::string code(n.child_value("code"));
        std::string unit(n.child_value("unit"));
        add_row(out, param, "quantity", system, code.empty() ? unit : code, d, d);
        if (!unit.empty() && unit != code) add_row(out, param, "quantity", "", unit, d, d);
      } else if (t == "Money" && number(n.child_value("value"), &d)) {
        add_row(out, param, "quantity", "urn:iso:std:iso:4217", std::string(n.child_value("currency")), d, d);
      } else if (t == "Range") {
        double lo = -9.0e18, hi = 9.0e18;
        const fhir::Node* low = n.child("low");
        const fhir::Node* high = n.child("high");
        bool has = false;
        std::string system, code;
        if (low && number(low->child_value("value"), &d)) {
          lo = d;
          has = true;
          system = low->child_value("system");
          code = low->child_value("code");
        }
        if (high && number(high->child_value("value"), &d)) {
          hi = d;
          has = true;
          if (code.empty()) {
            system = high->child_value("system");
            code = high->child_value("code");
          }
        }
        if (has) add_row(out, param, "quantity", system, code, lo, hi);
      }
      break;
    }
    case ParamType::Uri:
      if (n.has_value) add_row(out, param, "uri", "", n.value);
      break;
    case ParamType::Composite:
    case ParamType::Special: break;
  }
}

// The normalized words of an XHTML narrative (tags dropped, common entities
// decoded, white space collapsed), at most kMaxNarrative bytes.
std::string narrative_words(std::string_view xhtml) {
  constexpr size_t kMaxNarrative = 4096;
  std::string plain;
  bool in_tag = false;
  for (size_t i = 0; i < xhtml.size() && plain.size() < kMaxNarrative * 2; ++i) {
    char c = xhtml[i];
    if (in_tag) {
      if (c == '>') {
        in_tag = false;
        plain.push_back(' ');
      }
    } else if (c == '<') {
      in_tag = true;
    } else if (c == '&') {
      static const std::pair<std::string_view, char> kEntities[] = {
          {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}, {"&#39;", '\''}, {"&nbsp;", ' '}};
      bool done = false;
      for (const auto& [entity, ch] : kEntities)
        if (xhtml.substr(i, entity.size()) == entity) {
          plain.push_back(ch);
          i += entity.size() - 1;
          done = true;
          break;
        }
      if (!done) plain.push_back(c);
    } else {
      plain.push_back(std::isspace(static_cast<unsigned char>(c)) ? ' ' : c);
    }
  }
  std::string words;
  for (char c : normalize_string(plain)) {
    if (c == ' ' && (words.empty() || words.back() == ' ')) continue;
    words.push_back(c);
  }
  while (!words.empty() && words.back() == ' ') words.pop_back();
  if (words.size() > kMaxNarrative) {
    size_t n = kMaxNarrative;
    while (n > 0 && (static_cast<unsigned char>(words[n]) & 0xC0) == 0x80) --n;
    words.resize(n);
  }
  return words;
}

// Rows of one component value, computed as if it were a parameter of its own.
std::vector<IndexEntry> component_rows(const SearchParamDef::Component& comp, const Value& item,
                                       const fhirpath::Environment& env) {
  std::vector<IndexEntry> rows;
  SearchParamDef as_param;
  as_param.type = comp.type;
  fhirpath::Collection values;
  if (!comp.expression->evaluate(fhirpath::Collection{item}, env, &values)) return rows;
  for (const Value& v : values) index_value(as_param, v, &rows);
  return rows;
}

void index_composite(const SearchParamDef& def, const Value& item, const fhirpath::Environment& env,
                     std::vector<IndexEntry>* out) {
  std::vector<IndexEntry> first = component_rows(def.components[0], item, env);
  std::vector<IndexEntry> second = component_rows(def.components[1], item, env);
  for (const IndexEntry& a : first) {
    if (a.kind != "token") continue;
    for (const std::string& key : {a.system + "|" + a.value, "*|" + a.value}) {
      for (const IndexEntry& b : second) {
        if (b.kind == "text" || b.kind == "of-type") continue;
        std::string value = b.kind == "token" ? b.system + "|" + b.value : b.value;
        add_row(out, def.code, "composite", key, value, b.low, b.high);
      }
    }
  }
}

}  // namespace

std::vector<IndexEntry> Registry::index(const fhir::Node& resource) const {
  std::vector<IndexEntry> out;
  const auto* params = params_of(fhir::resource_type(resource));
  if (!params) return out;
  fhirpath::Environment env;
  env.resource = &resource;
  env.resolver = resolver_.get();
  for (const auto& [code, def] : *params) {
    if (!def.expression || code == "_id" || code == "_lastUpdated") continue;  // those two come from the version row
    fhirpath::Collection values;
    // An expression that fails on this resource (e.g. a cast of an
    // unexpected type) indexes nothing for that parameter.
    if (!def.expression->evaluate(&resource, env, &values)) continue;
    if (def.type == ParamType::Composite) {
      for (const Value& v : values) index_composite(def, v, env, &out);
      continue;
    }
    for (const Value& v : values) index_value(def, v, &out);
  }
  // _text (basic): the narrative's words, tags removed, for :contains-style matching.
  if (params->count("_text"))
    if (const fhir::Node* text = resource.child("text"))
      if (const fhir::Node* div = text->child("div"); div && div->has_value)
        add_row(&out, "_text", "text", "", narrative_words(div->value));
  // Identical rows (the same code in two codings, say) add nothing.
  std::sort(out.begin(), out.end(), [](const IndexEntry& a, const IndexEntry& b) {
    return std::tie(a.param, a.kind, a.system, a.value, a.low, a.high) <
           std::tie(b.param, b.kind, b.system, b.value, b.low, b.high);
  });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const IndexEntry& a, const IndexEntry& b) {
                          return a.param == b.param && a.kind == b.kind && a.system == b.system &&
                                 a.value == b.value && a.low == b.low && a.high == b.high;
                        }),
            out.end());
  return out;
}

namespace {

// Base letters of U+00C0..U+017F (Latin-1 Supplement letters and Latin
// Extended-A), '\0' where the character is not a letter with a base form.
constexpr const char* kLatinBase =
    // C0-FF
    "aaaaaaaceeeeiiii" "dnooooo\0ouuuuyts"  // Æ→a, Ð→d, ×→\0, Ø→o, Þ→t, ß→s
    "aaaaaaaceeeeiiii" "dnooooo\0ouuuuyty"
    // 100-17F
    "aaaaaaccccccccddddeeeeeeeeeegggg" "gggghhhhiiiiiiiiiiiijjkkklllllll" "lllnnnnnnnnnoooooooorrrrrrssssss" "ssttttttuuuuuuuuuuuuwwyyyzzzzzzs";

}  // namespace

std::string normalize_string(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(std::tolower(c)));
      ++i;
      continue;
    }
    uint32_t cp = 0;
    size_t len = 0;
    if ((c & 0xE0) == 0xC0) { cp = c & 0x1F; len = 2; }
    else if ((c & 0xF0) == 0xE0) { cp = c & 0x0F; len = 3; }
    else if ((c & 0xF8) == 0xF0) { cp = c & 0x07; len = 4; }
    else { ++i; continue; }  // stray continuation byte: dropped
    if (i + len > s.size()) break;
    bool ok = true;
    for (size_t k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) { ok = false; break; }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) { ++i; continue; }
    if (cp >= 0x300 && cp <= 0x36F) { i += len; continue; }  // combining accents
    if (cp >= 0xC0 && cp <= 0x17F && kLatinBase[cp - 0xC0] != '\0') {
      if (cp == 0xDF) out += "ss";
      else if (cp == 0xC6 || cp == 0xE6) out += "ae";
      else if (cp == 0x152 || cp == 0x153) out += "oe";
      else out.push_back(kLatinBase[cp - 0xC0]);
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  return out;
}

bool date_range(std::string_view text, int64_t* low, int64_t* high) {
  if (!parse_fhir_datetime(text, low)) return false;
  size_t n = text.size();
  int year = 0, month = 0;
  auto num = [&](size_t pos, size_t len) {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) v = v * 10 + (text[i] - '0');
    return v;
  };
  int64_t end = 0;
  if (n == 4) {
    year = num(0, 4);
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d", year + 1);
    if (!parse_fhir_datetime(buf, &end)) return false;
  } else if (n == 7) {
    year = num(0, 4);
    month = num(5, 2);
    char buf[16];
    if (month == 12) std::snprintf(buf, sizeof buf, "%04d-01", year + 1);
    else std::snprintf(buf, sizeof buf, "%04d-%02d", year, month + 1);
    if (!parse_fhir_datetime(buf, &end)) return false;
  } else if (n == 10) {
    end = *low + 86400LL * 1000000;
  } else {
    // A time: the precision is that of its last written field.
    size_t t = text.find('T');
    std::string_view time = text.substr(t + 1);
    size_t zone = time.find_first_of("Z+-");
    std::string_view clock = zone == std::string_view::npos ? time : time.substr(0, zone);
    int64_t step = 60LL * 1000000;  // hh:mm
    if (clock.size() >= 8) step = 1000000;  // hh:mm:ss
    size_t dot = clock.find('.');
    if (dot != std::string_view::npos) {
      size_t digits = clock.size() - dot - 1;
      step = 1;
      for (size_t k = digits; k < 6; ++k) step *= 10;
    }
    end = *low + step;
  }
  *high = end - 1;
  return true;
}

}  // namespace espace::interactions::search
