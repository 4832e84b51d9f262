// Loading and applying the CDA header rules and mapping tables (cda_rules.h).
#include "cda_rules.h"


#include <rapidjson/error/en.h>

#include "cda_codec.h"
#include "espace/fhir/data_files.h"
#include "espace/profiles/french_identifiers.h"

namespace espace::interactions::cda {
namespace {

using fhir::ErrorCategory;
using fhir::Issue;
using fhir::Severity;
using fhir::Status;

constexpr std::string_view kRulesFile = "server/interactions/data/cda-header-rules.json";
constexpr std::string_view kMappingFile = "server/interactions/data/cda-header-mapping.json";

Status config_error(std::string_view file, const std::string& why) {
  return Status::error(ErrorCategory::Internal, "exception", std::string(file) + ": " + why);
}

std::string get_string(const rapidjson::Value& v, const char* key) {
  auto it = v.FindMember(key);
  return it != v.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString(), it->value.GetStringLength())
                                                     : std::string();
}

bool is_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

int two_digits(std::string_view s, size_t at) { return (s[at] - '0') * 10 + (s[at + 1] - '0'); }

bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
int days_in(int y, int m) {
  static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : d[m - 1];
}

// Splits a TS into its digits, optional fraction and optional zone, and checks ranges.
struct Ts {
  std::string digits, fraction, zone;
};
bool parse_ts(std::string_view ts, Ts* out) {
  size_t i = 0;
  while (i < ts.size() && ts[i] >= '0' && ts[i] <= '9') ++i;
  out->digits = std::string(ts.substr(0, i));
  const size_t n = out->digits.size();
  if (n != 4 && n != 6 && n != 8 && n != 10 && n != 12 && n != 14) return false;
  if (i < ts.size() && ts[i] == '.') {
    if (n != 14) return false;
    size_t start = ++i;
    while (i < ts.size() && ts[i] >= '0' && ts[i] <= '9') ++i;
    if (i == start || i - start > 6) return false;
    out->fraction = std::string(ts.substr(start, i - start));
  }
  if (i < ts.size()) {
    if ((ts[i] != '+' && ts[i] != '-') || ts.size() - i != 5 || !is_digits(ts.substr(i + 1))) return false;
    if (n < 10) return false;  // a zone only makes sense with a time
    out->zone = std::string(ts.substr(i));
    if (two_digits(out->zone, 1) > 14 || two_digits(out->zone, 3) > 59) return false;
  }
  const std::string& d = out->digits;
  int year = std::stoi(d.substr(0, 4));
  if (year < 1) return false;
  if (n >= 6) {
    int month = two_digits(d, 4);
    if (month < 1 || month > 12) return false;
    if (n >= 8) {
      int day = two_digits(d, 6);
      if (day < 1 || day > days_in(year, month)) return false;
    }
  }
  if (n >= 10 && two_digits(d, 8) > 23) return false;
  if (n >= 12 && two_digits(d, 10) > 59) return false;
  if (n >= 14 && two_digits(d, 12) > 59) return false;
  return true;
}

bool is_oid(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  bool digit_before = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      if (!digit_before) return false;
      digit_before = false;
    } else if (c >= '0' && c <= '9') {
      if (!digit_before && c == '0' && i + 1 < s.size() && s[i + 1] != '.') return false;  // no leading zeros
      digit_before = true;
    } else {
      return false;
    }
  }
  return digit_before;
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < 36; ++i) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

Issue rule_issue(const HeaderRule& rule, std::string code, std::string detail, std::string xpath) {
  Issue i;
  i.severity = rule.error ? Severity::Error : Severity::Warning;
  i.code = std::move(code);
  i.message_id = rule.id;
  // The rule id leads the text: OperationOutcome has no field of its own for it.
  i.diagnostics = rule.text + (detail.empty() ? std::string() : " (" + detail + ")");
  i.location = std::move(xpath);
  return i;
}

Status read_rule(const rapidjson::Value& v, HeaderRule* rule) {
  if (!v.IsObject()) return config_error(kRulesFile, "every rule is an object");
  rule->id = get_string(v, "id");
  rule->text = get_string(v, "text");
  if (rule->id.empty() || rule->text.empty()) return config_error(kRulesFile, "every rule has an id and a text");
  const std::string where = "rule " + rule->id + ": ";
  if (Status s = parse_path(get_string(v, "path"), &rule->path); !s) return config_error(kRulesFile, where + s.message());
  std::string context = get_string(v, "context");
  if (!context.empty()) {
    rule->has_context = true;
    if (Status s = parse_path(context, &rule->context); !s) return config_error(kRulesFile, where + s.message());
    if (rule->path.absolute) return config_error(kRulesFile, where + "with a context the path is relative");
  } else if (!rule->path.absolute) {
    return config_error(kRulesFile, where + "the path must be absolute");
  }
  std::string when = get_string(v, "when");
  if (!when.empty()) {
    rule->has_when = true;
    if (Status s = parse_path(when, &rule->when); !s || !rule->when.absolute)
      return config_error(kRulesFile, where + "bad 'when' path");
  }
  std::string check = get_string(v, "check");
  using C = HeaderRule::Check;
  if (check == "present") rule->check = C::Present;
  else if (check == "equals") rule->check = C::Equals;
  else if (check == "one-of") rule->check = C::OneOf;
  else if (check == "contains") rule->check = C::Contains;
  else if (check == "in-table") rule->check = C::InTable;
  else if (check == "format") rule->check = C::Format;
  else return config_error(kRulesFile, where + "unknown check '" + check + "'");
  rule->value = get_string(v, "value");
  rule->table = get_string(v, "table");
  rule->format = get_string(v, "format");
  if (auto it = v.FindMember("values"); it != v.MemberEnd() && it->value.IsArray())
    for (const auto& x : it->value.GetArray())
      if (x.IsString()) rule->values.emplace_back(x.GetString(), x.GetStringLength());
  if (auto it = v.FindMember("min"); it != v.MemberEnd() && it->value.IsUint()) rule->min = it->value.GetUint();
  if (auto it = v.FindMember("max"); it != v.MemberEnd() && it->value.IsUint()) rule->max = it->value.GetUint();
  rule->error = get_string(v, "severity") != "warning";
  if ((rule->check == C::Equals || rule->check == C::Contains) && rule->value.empty())
    return config_error(kRulesFile, where + "needs a value");
  if (rule->check == C::OneOf && rule->values.empty()) return config_error(kRulesFile, where + "needs values");
  if (rule->check == C::Format) {
    static const char* const formats[] = {"ts", "ts-second", "oid", "oid-or-uuid", "ins-nir", "idnat-ps",
                                          "idnat-struct", "non-empty", "base64-pdf", "language"};
    bool known = false;
    for (const char* f : formats) known = known || rule->format == f;
    if (!known) return config_error(kRulesFile, where + "unknown format '" + rule->format + "'");
  }
  return Status::ok();
}

Status read_field(const rapidjson::Value& v, const rapidjson::Value* tables, bool nested, MappingField* f) {
  if (!v.IsObject()) return config_error(kMappingFile, "every field is an object");
  f->target = get_string(v, "target");
  f->as = get_string(v, "as");
  f->table = get_string(v, "table");
  if (f->target.empty()) return config_error(kMappingFile, "every field has a target");
  const std::string where = "field " + f->target + ": ";
  std::vector<std::string> sources;
  if (auto it = v.FindMember("source"); it != v.MemberEnd() && it->value.IsString())
    sources.emplace_back(it->value.GetString());
  if (auto it = v.FindMember("sources"); it != v.MemberEnd() && it->value.IsArray())
    for (const auto& x : it->value.GetArray())
      if (x.IsString()) sources.emplace_back(x.GetString());
  if (auto it = v.FindMember("for_each"); it != v.MemberEnd() && it->value.IsString()) {
    f->for_each = true;
    sources = {it->value.GetString()};
  }
  for (const std::string& s : sources) {
    Path p;
    if (Status st = parse_path(s, &p); !st) return config_error(kMappingFile, where + st.message());
    if (p.absolute == nested) return config_error(kMappingFile, where + "paths are absolute, relative inside for_each");
    f->sources.push_back(std::move(p));
  }
  if (auto it = v.FindMember("first"); it != v.MemberEnd() && it->value.IsBool()) f->first_only = it->value.GetBool();
  if (auto it = v.FindMember("value"); it != v.MemberEnd()) f->constant = &it->value;
  if (f->for_each) {
    auto it = v.FindMember("fields");
    if (it == v.MemberEnd() || !it->value.IsArray()) return config_error(kMappingFile, where + "for_each needs fields");
    for (const auto& x : it->value.GetArray()) {
      MappingField sub;
      if (Status s = read_field(x, tables, true, &sub); !s) return s;
      f->fields.push_back(std::move(sub));
    }
    return Status::ok();
  }
  static const char* const kinds[] = {"identifier", "unique-id", "coding", "text", "datetime", "date",
                                      "table", "human-name", "name-text", "const"};
  bool known = false;
  for (const char* k : kinds) known = known || f->as == k;
  if (!known) return config_error(kMappingFile, where + "unknown conversion '" + f->as + "'");
  if (f->as == "const" ? !f->constant : f->sources.empty())
    return config_error(kMappingFile, where + "needs a source (or a value for const)");
  if (f->as == "table" && (!tables || !tables->HasMember(f->table.c_str())))
    return config_error(kMappingFile, where + "unknown table '" + f->table + "'");
  return Status::ok();
}

// --- checking ----------------------------------------------------------------

void apply_rule(const CdaConfig& config, const HeaderRule& rule, const XmlElement& context,
                const std::string& context_xpath, std::vector<Issue>* issues) {
  using C = HeaderRule::Check;
  PathResult r = evaluate_path(rule.path, context, context_xpath);
  if (r.matches.size() < rule.min) {
    issues->push_back(rule_issue(rule, "required", "missing", r.missing_xpath));
    return;
  }
  if (r.matches.size() > rule.max) {
    issues->push_back(rule_issue(rule, "structure",
                                 "found " + std::to_string(r.matches.size()) + ", at most " + std::to_string(rule.max),
                                 r.matches[rule.max].xpath));
    return;
  }
  if (rule.check == C::Contains) {
    for (const PathMatch& m : r.matches)
      if (m.value == rule.value) return;
    std::string where = r.matches.empty() ? r.missing_xpath : r.matches.front().xpath;
    issues->push_back(rule_issue(rule, "required", "expected " + rule.value, where));
    return;
  }
  for (const PathMatch& m : r.matches) {
    switch (rule.check) {
      case C::Present:
        if (m.value.empty() && m.element->children.empty() && m.element->attributes.empty())
          issues->push_back(rule_issue(rule, "required", "empty", m.xpath));
        break;
      case C::Equals:
        if (m.value != rule.value) issues->push_back(rule_issue(rule, "value", "expected " + rule.value, m.xpath));
        break;
      case C::OneOf: {
        bool ok = false;
        for (const std::string& v : rule.values) ok = ok || v == m.value;
        if (!ok) issues->push_back(rule_issue(rule, "code-invalid", "not an allowed value", m.xpath));
        break;
      }
      case C::InTable: {
        auto t = config.tables ? config.tables->FindMember(rule.table.c_str()) : rapidjson::Value::ConstMemberIterator();
        bool ok = config.tables && t != config.tables->MemberEnd() && t->value.IsObject() &&
                  t->value.HasMember(m.value.c_str()) && !m.value.empty();
        if (!ok) issues->push_back(rule_issue(rule, "code-invalid", "code '" + m.value + "' is not in " + rule.table, m.xpath));
        break;
      }
      case C::Format:
        // The value itself stays out of the message: it may be patient data.
        if (!check_format(rule.format, m.value)) issues->push_back(rule_issue(rule, "value", "not a valid " + rule.format, m.xpath));
        break;
      case C::Contains:
        break;
    }
  }
}

// --- mapping -------------------------------------------------------------------

using Allocator = rapidjson::Document::AllocatorType;

rapidjson::Value str(std::string_view s, Allocator& a) {
  return rapidjson::Value(s.data(), static_cast<rapidjson::SizeType>(s.size()), a);
}

// Follows "a.b[0].c[]" from `at`, creating objects and arrays on the way;
// "[]" appends a new element. Returns the slot to assign.
rapidjson::Value* locate(rapidjson::Value* at, std::string_view target, Allocator& a) {
  size_t i = 0;
  while (i < target.size()) {
    size_t end = target.find_first_of(".[", i);
    std::string name(target.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i));
    i = end == std::string_view::npos ? target.size() : end;
    if (!at->IsObject()) at->SetObject();
    auto m = at->FindMember(name.c_str());
    if (m == at->MemberEnd()) {
      at->AddMember(str(name, a), rapidjson::Value(), a);
      m = at->FindMember(name.c_str());
    }
    at = &m->value;
    if (i < target.size() && target[i] == '[') {
      size_t close = target.find(']', i);
      std::string_view index = target.substr(i + 1, close - i - 1);
      if (!at->IsArray()) at->SetArray();
      if (index.empty()) {
        at->PushBack(rapidjson::Value(), a);
      } else {
        size_t n = static_cast<size_t>(std::stoul(std::string(index)));
        while (at->Size() <= n) at->PushBack(rapidjson::Value(), a);
        at = &(*at)[static_cast<rapidjson::SizeType>(n)];
        i = close + 1;
        if (i < target.size() && target[i] == '.') ++i;
        continue;
      }
      at = &(*at)[at->Size() - 1];
      i = close + 1;
    }
    if (i < target.size() && target[i] == '.') ++i;
  }
  return at;
}

std::string system_for_oid(const CdaConfig& config, const std::string& oid) {
  auto it = config.code_systems.find(oid);
  if (it != config.code_systems.end()) return it->second;
  return is_uuid(oid) ? "urn:uuid:" + oid : "urn:oid:" + oid;
}

std::string child_text(const XmlElement& e, std::string_view name) {
  for (const auto& c : e.children)
    if (c->in_hl7 && c->name == name) return collapse_whitespace(c->text);
  return {};
}

// One converted value, or a null Value when the input does not convert.
rapidjson::Value convert(const CdaConfig& config, const MappingField& f, const PathMatch& m, Allocator& a) {
  rapidjson::Value out;
  const XmlElement& e = *m.element;
  if (f.as == "text") {
    if (!m.value.empty()) out = str(m.value, a);
  } else if (f.as == "datetime" || f.as == "date") {
    std::string v;
    if (f.as == "datetime" ? ts_to_datetime(m.value, &v) : ts_to_date(m.value, &v)) out = str(v, a);
  } else if (f.as == "identifier") {
    const std::string* root = e.attribute("root");
    const std::string* extension = e.attribute("extension");
    if (root && !root->empty()) {
      out.SetObject();
      if (extension && !extension->empty()) {
        out.AddMember("system", str(system_for_oid(config, *root), a), a);
        out.AddMember("value", str(*extension, a), a);
      } else {
        // A root alone is the identifier (II.root as a unique id): an URI.
        out.AddMember("system", str("urn:ietf:rfc:3986", a), a);
        out.AddMember("value", str(system_for_oid(config, *root), a), a);
      }
    }
  } else if (f.as == "unique-id") {
    // The document's XDS uniqueId (ITI TF-3 4.2.3.2.26): a root alone is an
    // URI (urn:oid:, urn:uuid:); root and extension are written root^extension.
    const std::string* root = e.attribute("root");
    const std::string* extension = e.attribute("extension");
    if (root && !root->empty()) {
      out.SetObject();
      if (extension && !extension->empty()) {
        out.AddMember("value", str(*root + "^" + *extension, a), a);
      } else {
        out.AddMember("system", str("urn:ietf:rfc:3986", a), a);
        out.AddMember("value", str((is_uuid(*root) ? "urn:uuid:" : "urn:oid:") + *root, a), a);
      }
    }
  } else if (f.as == "coding") {
    const std::string* code = e.attribute("code");
    const std::string* system = e.attribute("codeSystem");
    if (code && !code->empty()) {
      out.SetObject();
      if (system && !system->empty()) out.AddMember("system", str(system_for_oid(config, *system), a), a);
      out.AddMember("code", str(*code, a), a);
      if (const std::string* display = e.attribute("displayName"); display && !display->empty())
        out.AddMember("display", str(*display, a), a);
    }
  } else if (f.as == "table") {
    auto t = config.tables->FindMember(f.table.c_str());
    if (t != config.tables->MemberEnd() && t->value.IsObject()) {
      auto row = t->value.FindMember(m.value.c_str());
      if (row != t->value.MemberEnd() && !m.value.empty()) out.CopyFrom(row->value, a);
    }
  } else if (f.as == "human-name" || f.as == "name-text") {
    std::string family = child_text(e, "family");
    std::vector<std::string> given;
    for (const auto& c : e.children)
      if (c->in_hl7 && c->name == "given") {
        std::string g = collapse_whitespace(c->text);
        if (!g.empty()) given.push_back(std::move(g));
      }
    if (f.as == "name-text") {
      std::string text;
      for (const std::string& g : given) text += (text.empty() ? "" : " ") + g;
      if (!family.empty()) text += (text.empty() ? "" : " ") + family;
      if (!text.empty()) out = str(text, a);
    } else if (!family.empty() || !given.empty()) {
      out.SetObject();
      if (!family.empty()) out.AddMember("family", str(family, a), a);
      if (!given.empty()) {
        rapidjson::Value list(rapidjson::kArrayType);
        for (const std::string& g : given) list.PushBack(str(g, a), a);
        out.AddMember("given", list, a);
      }
    }
  }
  return out;
}

void apply_field(const CdaConfig& config, const MappingField& f, const XmlElement& context,
                 const std::string& context_xpath, rapidjson::Value* into, Allocator& a) {
  if (f.as == "const" && !f.for_each) {
    locate(into, f.target, a)->CopyFrom(*f.constant, a);
    return;
  }
  for (const Path& source : f.sources) {
    PathResult r = evaluate_path(source, context, context_xpath);
    bool wrote = false;
    for (const PathMatch& m : r.matches) {
      if (f.for_each) {
        rapidjson::Value item(rapidjson::kObjectType);
        for (const MappingField& sub : f.fields) apply_field(config, sub, *m.element, m.xpath, &item, a);
        if (item.MemberCount() == 0) continue;
        locate(into, f.target, a)->Swap(item);
      } else {
        rapidjson::Value v = convert(config, f, m, a);
        if (v.IsNull()) continue;
        if (v.IsArray() && f.target.size() > 2 && f.target.compare(f.target.size() - 2, 2, "[]") == 0) {
          // A table row that is a list fills several items of the target.
          for (auto& item : v.GetArray()) locate(into, f.target, a)->Swap(item);
        } else {
          locate(into, f.target, a)->Swap(v);
        }
      }
      wrote = true;
      if (f.first_only) break;
    }
    if (wrote) return;  // later sources are fallbacks
  }
}

}  // namespace

bool check_format(std::string_view format, std::string_view value) {
  if (format == "ts") {
    Ts ts;
    if (!parse_ts(value, &ts)) return false;
    return ts.digits.size() < 10 || !ts.zone.empty();
  }
  if (format == "ts-second") {  // to the second, with a zone (document and author times)
    Ts ts;
    return parse_ts(value, &ts) && ts.digits.size() == 14 && !ts.zone.empty();
  }
  if (format == "oid") return is_oid(value);
  if (format == "oid-or-uuid") return is_oid(value) || is_uuid(value);
  // The key checks are the profiles' (one implementation for FHIR and CDA).
  if (format == "ins-nir") {
    profiles::fr::KeyCheck k = profiles::fr::check_nir(value);
    return k.well_formed && k.key_checked && k.key_ok;
  }
  // National practitioner id (8 + RPPS, 0 + ADELI) and structure id (1/2 + FINESS, 3 + SIRET).
  if (format == "idnat-ps" || format == "idnat-struct") {
    profiles::fr::KeyCheck k = profiles::fr::check_identifier(
        format == "idnat-ps" ? profiles::fr::Scheme::Idnps : profiles::fr::Scheme::Idnst, value);
    return k.well_formed && (!k.key_checked || k.key_ok);
  }
  if (format == "non-empty") return !value.empty();
  if (format == "base64-pdf") {
    std::string head;
    return base64_check_prefix(value, 5, &head) && head == "%PDF-";
  }
  if (format == "language") {
    // BCP 47 as the CI-SIS uses it: ll or ll-CC.
    auto alpha = [](char c, bool upper) { return upper ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z'); };
    if (value.size() == 2) return alpha(value[0], false) && alpha(value[1], false);
    return value.size() == 5 && alpha(value[0], false) && alpha(value[1], false) && value[2] == '-' &&
           alpha(value[3], true) && alpha(value[4], true);
  }
  return false;
}

bool ts_to_datetime(std::string_view text, std::string* out) {
  Ts ts;
  if (!parse_ts(text, &ts)) return false;
  const std::string& d = ts.digits;
  if (d.size() >= 10 && ts.zone.empty()) return false;
  std::string r = d.substr(0, 4);
  if (d.size() >= 6) r += "-" + d.substr(4, 2);
  if (d.size() >= 8) r += "-" + d.substr(6, 2);
  if (d.size() >= 10) {
    r += "T" + d.substr(8, 2) + ":" + (d.size() >= 12 ? d.substr(10, 2) : "00") + ":" +
         (d.size() >= 14 ? d.substr(12, 2) : "00");
    if (!ts.fraction.empty()) r += "." + ts.fraction;
    r += ts.zone.substr(0, 3) + ":" + ts.zone.substr(3);
  }
  *out = std::move(r);
  return true;
}

bool ts_to_date(std::string_view text, std::string* out) {
  Ts ts;
  if (!parse_ts(text, &ts)) return false;
  const std::string& d = ts.digits;
  std::string r = d.substr(0, 4);
  if (d.size() >= 6) r += "-" + d.substr(4, 2);
  if (d.size() >= 8) r += "-" + d.substr(6, 2);
  *out = std::move(r);
  return true;
}

Status load_cda_config(std::string_view rules_json, std::string_view mapping_json, CdaConfig* out) {
  rapidjson::Document rules;
  rules.Parse(rules_json.data(), rules_json.size());
  if (rules.HasParseError() || !rules.IsObject())
    return config_error(kRulesFile, std::string("not a JSON object: ") + rapidjson::GetParseError_En(rules.GetParseError()));
  out->mapping_doc.Parse(mapping_json.data(), mapping_json.size());
  if (out->mapping_doc.HasParseError() || !out->mapping_doc.IsObject())
    return config_error(kMappingFile, std::string("not a JSON object: ") +
                                          rapidjson::GetParseError_En(out->mapping_doc.GetParseError()));
  const rapidjson::Value& m = out->mapping_doc;
  auto t = m.FindMember("template");
  if (t == m.MemberEnd() || !t->value.IsObject()) return config_error(kMappingFile, "needs a template object");
  out->resource_template = &t->value;
  auto tables = m.FindMember("tables");
  if (tables == m.MemberEnd() || !tables->value.IsObject()) return config_error(kMappingFile, "needs a tables object");
  out->tables = &tables->value;
  if (auto cs = m.FindMember("code-systems"); cs != m.MemberEnd() && cs->value.IsObject())
    for (const auto& e : cs->value.GetObject())
      if (e.value.IsString()) out->code_systems.emplace(e.name.GetString(), e.value.GetString());
  auto fields = m.FindMember("fields");
  if (fields == m.MemberEnd() || !fields->value.IsArray()) return config_error(kMappingFile, "needs a fields array");
  for (const auto& v : fields->value.GetArray()) {
    MappingField f;
    if (Status s = read_field(v, out->tables, false, &f); !s) return s;
    out->fields.push_back(std::move(f));
  }
  auto list = rules.FindMember("rules");
  if (list == rules.MemberEnd() || !list->value.IsArray()) return config_error(kRulesFile, "needs a rules array");
  for (const auto& v : list->value.GetArray()) {
    HeaderRule rule;
    if (Status s = read_rule(v, &rule); !s) return s;
    if (rule.check == HeaderRule::Check::InTable && !out->tables->HasMember(rule.table.c_str()))
      return config_error(kRulesFile, "rule " + rule.id + ": unknown table '" + rule.table + "'");
    out->rules.push_back(std::move(rule));
  }
  return Status::ok();
}

Status cda_config(const CdaConfig** out) {
  return fhir::load_once<CdaConfig>(
      [](CdaConfig* config) {
        std::string rules, mapping;
        Status s = fhir::read_data_file(kRulesFile, &rules);
        if (s) s = fhir::read_data_file(kMappingFile, &mapping);
        if (s) s = load_cda_config(rules, mapping, config);
        // A missing data file is the server's fault, not the client's.
        if (s.category() == ErrorCategory::NotFound) s.set_category(ErrorCategory::Internal);
        return s;
      },
      out);
}

std::vector<Issue> check_header(const CdaConfig& config, const XmlElement& root) {
  std::vector<Issue> issues;
  const std::string root_xpath = "/" + root.name;
  for (const HeaderRule& rule : config.rules) {
    if (rule.has_when && evaluate_path(rule.when, root, root_xpath).matches.empty()) continue;
    if (!rule.has_context) {
      apply_rule(config, rule, root, root_xpath, &issues);
      continue;
    }
    for (const PathMatch& c : evaluate_path(rule.context, root, root_xpath).matches)
      apply_rule(config, rule, *c.element, c.xpath, &issues);
  }
  return issues;
}

void map_header(const CdaConfig& config, const XmlElement& root, rapidjson::Document* out) {
  Allocator& a = out->GetAllocator();
  out->CopyFrom(*config.resource_template, a);
  const std::string root_xpath = "/" + root.name;
  for (const MappingField& f : config.fields) apply_field(config, f, root, root_xpath, out, a);
}

}  // namespace espace::interactions::cda
