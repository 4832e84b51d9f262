// Profiles: snapshot generation from differentials and validation of
// resources against our profiles.
//
// Message ids (besides the base ones reused with the profile named in the text):
//   card-min / card-max     the profile tightened the cardinality and it is not met
//   slice-min / slice-max   a slice occurs fewer / more times than the profile allows
//   slice-unmatched         an item matches no slice of a closed slicing
//   fixed-mismatch          value differs from fixed[x]
//   pattern-mismatch        value does not contain pattern[x]
//   min-value / max-value   below minValue[x] / above maxValue[x]
//   type-not-allowed        a choice type the profile removed
//   ref-wrong-type          reference to a type the profile's targetProfile excludes
//   binding-required / binding-extensible / binding-not-checked   a binding the profile sets
//   inv-<key>               a constraint of the profile (FHIRPath)
//   identifier-key-invalid / identifier-format-invalid   named checks (french_identifiers.h)
//   profile-unknown         meta.profile (warning) or an asked profile (error) we do not know
//   profile-wrong-type      the profile constrains another resource type
//   profile-not-checked     a profile of the R4 package (information: only ours are checked)
#include "profile_rules.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "espace/fhir/data_files.h"
#include "espace/fhir/node.h"
#include "espace/profiles/french_identifiers.h"
#include "espace/profiles/validator.h"

namespace espace::profiles {

using fhir::Issue;
using fhir::Node;
using fhir::Severity;
using fhir::Status;


namespace {

constexpr std::string_view kCoreSd = "http://hl7.org/fhir/StructureDefinition/";
constexpr size_t kMaxProfileBytes = 4u << 20;

Status invalid(std::string message, std::string id = "profile-invalid") {
  Issue i;
  i.code = "invalid";
  i.diagnostics = std::move(message);
  i.message_id = std::move(id);
  return Status::error(fhir::ErrorCategory::Invalid, std::move(i));
}

std::string str_member(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !it->value.IsString()) return {};
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

// The member whose name is prefix + an upper-case type name ("fixedUri").
const rapidjson::Value* prefixed_member(const rapidjson::Value& obj, std::string_view prefix) {
  for (auto it = obj.MemberBegin(); it != obj.MemberEnd(); ++it) {
    std::string_view name(it->name.GetString(), it->name.GetStringLength());
    if (name.size() > prefix.size() && name.starts_with(prefix) && name[prefix.size()] >= 'A' &&
        name[prefix.size()] <= 'Z')
      return &it->value;
  }
  return nullptr;
}

uint32_t parse_max(const std::string& s, bool* ok) {
  *ok = true;
  if (s == "*") return UINT32_MAX;
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) {
    *ok = false;
    return 0;
  }
  return static_cast<uint32_t>(std::stoul(s));
}

std::string json_text(const rapidjson::Value& v) {
  if (v.IsString()) return std::string("'") + v.GetString() + "'";
  if (v.IsBool()) return v.GetBool() ? "true" : "false";
  if (v.IsNumber()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", v.GetDouble());
    return buf;
  }
  if (v.IsArray()) {
    std::string s = "[";
    for (const auto& e : v.GetArray()) s += (s.size() > 1 ? ", " : "") + json_text(e);
    return s + "]";
  }
  if (v.IsObject()) {
    std::string s = "{";
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it)
      s += std::string(s.size() > 1 ? ", " : "") + it->name.GetString() + ": " + json_text(it->value);
    return s + "}";
  }
  return "null";
}

// Does the node hold the pattern (every member of the pattern present with a
// matching value)? exact: also nothing else (fixed[x]).
bool json_matches(const rapidjson::Value& p, const Node& n, bool exact, int depth = 0) {
  if (depth > 32) return false;
  if (p.IsString()) return n.has_value && n.value == std::string_view(p.GetString(), p.GetStringLength());
  if (p.IsBool()) return n.has_value && n.value == (p.GetBool() ? "true" : "false");
  if (p.IsNumber()) {
    if (!n.has_value) return false;
    char* end = nullptr;
    double d = std::strtod(n.value.c_str(), &end);
    return end && *end == 0 && d == p.GetDouble();
  }
  if (!p.IsObject()) return false;
  size_t matched_children = 0;
  for (auto it = p.MemberBegin(); it != p.MemberEnd(); ++it) {
    std::string_view name(it->name.GetString(), it->name.GetStringLength());
    std::vector<const Node*> kids;
    for (const Node& c : n.children)
      if (c.name == name) kids.push_back(&c);
    matched_children += kids.size();
    auto any_match = [&](const rapidjson::Value& pv) {
      for (const Node* k : kids)
        if (json_matches(pv, *k, exact, depth + 1)) return true;
      return false;
    };
    if (it->value.IsArray()) {
      if (exact && it->value.Size() != kids.size()) return false;
      for (const auto& pv : it->value.GetArray())
        if (!any_match(pv)) return false;
    } else if (!any_match(it->value)) {
      return false;
    }
  }
  return !exact || matched_children == n.children.size();
}

}  // namespace

// ---------------------------------------------------------------------------
// Snapshot generation.

namespace {

class SnapshotBuilder {
 public:
  SnapshotBuilder(const fhir::Definitions& defs, Profile* p) : defs_(defs), p_(p) {}

  Status build(const rapidjson::Value& differential) {
    const fhir::TypeDef* root_type = defs_.type(p_->type);
    if (!root_type) return invalid("profile " + p_->url + ": unknown type " + p_->type);
    ProfileElement& root = p_->elements.emplace_back();
    root.id = root.path = root.name = p_->type;
    root.min = root.base_min = 0;
    root.max = root.base_max = 1;
    root.type_def = root_type;
    root.types = {p_->type};
    p_->root = &root;
    by_id_.emplace(root.id, &root);
    for (const auto& e : differential.GetArray()) {
      if (!e.IsObject()) return invalid("profile " + p_->url + ": a differential element is not an object");
      std::string id = str_member(e, "id");
      if (id.empty()) id = str_member(e, "path");
      ProfileElement* pe = nullptr;
      if (Status s = element(id, &pe); !s) return s;
      if (Status s = apply(e, pe); !s) return s;
    }
    // profiling.html#discriminator: "exists" tells at most two slices apart,
    // one where the element is required and one where it is forbidden.
    for (const ProfileElement& pe : p_->elements)
      for (const Discriminator& d : pe.discriminators)
        if (d.type == "exists" && pe.slices.size() > 2)
          return invalid("profile " + p_->url + ", element " + pe.id + ": an exists discriminator allows at most two slices");
    return Status::ok();
  }

 private:
  Status element(const std::string& id, ProfileElement** out) {
    if (auto it = by_id_.find(id); it != by_id_.end()) {
      *out = it->second;
      return Status::ok();
    }
    size_t dot = id.rfind('.');
    if (dot == std::string::npos) return invalid("profile " + p_->url + ": element " + id + " is outside " + p_->type);
    std::string parent_id = id.substr(0, dot);
    std::string segment = id.substr(dot + 1);
    std::string slice;
    if (size_t colon = segment.find(':'); colon != std::string::npos) {
      slice = segment.substr(colon + 1);
      segment = segment.substr(0, colon);
    }
    ProfileElement* parent = nullptr;
    if (!slice.empty()) {
      // A slice: same base as its sliced element.
      ProfileElement* sliced = nullptr;
      if (Status s = element(parent_id + "." + segment, &sliced); !s) return s;
      ProfileElement& pe = p_->elements.emplace_back(*sliced);
      pe.id = id;
      pe.slice_name = slice;
      pe.from_differential = false;
      pe.children.clear();
      pe.slices.clear();
      pe.sliced = false;
      pe.discriminators.clear();
      pe.constraints.clear();
      pe.fixed = pe.pattern = pe.min_value = pe.max_value = nullptr;
      pe.binding_from_profile = false;  // checked once, on the sliced element
      pe.target_types.clear();
      pe.target_profiles.clear();
      pe.min = pe.base_min = 0;
      pe.base_max = sliced->max;
      sliced->slices.push_back(&pe);
      by_id_.emplace(id, &pe);
      *out = &pe;
      return Status::ok();
    }
    if (Status s = element(parent_id, &parent); !s) return s;
    bool choice = segment.size() > 3 && segment.ends_with("[x]");
    std::string name = choice ? segment.substr(0, segment.size() - 3) : segment;
    if (!parent->type_def)
      return invalid("profile " + p_->url + ": cannot constrain " + id + " (its parent has several types; restrict it)");
    const fhir::ElementDef* base = parent->type_def->find(name);
    if (!base) return invalid("profile " + p_->url + ": " + id + " is not an element of " + parent->type_def->name);
    ProfileElement& pe = p_->elements.emplace_back();
    pe.id = id;
    pe.path = parent->path + "." + segment;
    pe.name = name;
    pe.is_choice = base->is_choice;
    pe.min = pe.base_min = base->min;
    pe.max = pe.base_max = base->max;
    for (const fhir::TypeDef* t : base->types) pe.types.push_back(t->name);
    if (base->types.size() == 1) pe.type_def = base->types[0];
    pe.binding_strength = base->binding_strength;
    pe.binding_value_set = base->binding_value_set;
    parent->children.push_back(&pe);
    by_id_.emplace(id, &pe);
    *out = &pe;
    return Status::ok();
  }

  Status apply(const rapidjson::Value& e, ProfileElement* pe) {
    const std::string where = "profile " + p_->url + ", element " + pe->id;
    pe->from_differential = true;
    pe->source = &e;
    if (auto it = e.FindMember("min"); it != e.MemberEnd()) {
      if (!it->value.IsUint()) return invalid(where + ": min is not a non-negative integer");
      pe->min = it->value.GetUint();
    }
    if (auto it = e.FindMember("max"); it != e.MemberEnd()) {
      bool ok = false;
      pe->max = it->value.IsString() ? parse_max(it->value.GetString(), &ok) : 0;
      if (!ok) return invalid(where + ": max must be a number or *");
      if (pe->max > pe->base_max) return invalid(where + ": max widens the base cardinality");
    }
    if (pe->min > pe->max) return invalid(where + ": min is above max");
    if (auto it = e.FindMember("type"); it != e.MemberEnd() && it->value.IsArray()) {
      std::vector<std::string> types;
      for (const auto& t : it->value.GetArray()) {
        if (!t.IsObject()) continue;
        std::string code = str_member(t, "code");
        if (std::find(pe->types.begin(), pe->types.end(), code) == pe->types.end())
          return invalid(where + ": type " + code + " is not allowed by the base");
        types.push_back(code);
        if (auto pr = t.FindMember("profile"); pr != t.MemberEnd() && pr->value.IsArray())
          for (const auto& u : pr->value.GetArray())
            if (u.IsString()) pe->type_profiles.emplace_back(u.GetString());
        if (auto tp = t.FindMember("targetProfile"); tp != t.MemberEnd() && tp->value.IsArray())
          for (const auto& u : tp->value.GetArray()) {
            if (!u.IsString()) continue;
            std::string_view url = u.GetString();
            if (url.starts_with(kCoreSd)) pe->target_types.emplace_back(url.substr(kCoreSd.size()));
            pe->target_profiles.emplace_back(url.substr(0, url.find('|')));
          }
      }
      if (!types.empty()) {
        pe->types_restricted = types.size() < pe->types.size();
        pe->types = types;
        pe->type_def = types.size() == 1 ? defs_.type(types[0]) : nullptr;
      }
    }
    pe->fixed = prefixed_member(e, "fixed");
    pe->pattern = prefixed_member(e, "pattern");
    pe->min_value = prefixed_member(e, "minValue");
    pe->max_value = prefixed_member(e, "maxValue");
    if (auto it = e.FindMember("binding"); it != e.MemberEnd() && it->value.IsObject()) {
      pe->binding_strength = str_member(it->value, "strength");
      pe->binding_value_set = str_member(it->value, "valueSet");
      pe->binding_value_set = pe->binding_value_set.substr(0, pe->binding_value_set.find('|'));
      pe->binding_from_profile = true;
    }
    if (auto it = e.FindMember("slicing"); it != e.MemberEnd() && it->value.IsObject()) {
      pe->sliced = true;
      std::string rules = str_member(it->value, "rules");
      if (!rules.empty()) pe->slicing_rules = rules;
      if (auto d = it->value.FindMember("discriminator"); d != it->value.MemberEnd() && d->value.IsArray())
        for (const auto& x : d->value.GetArray())
          if (x.IsObject()) {
            Discriminator dis{str_member(x, "type"), str_member(x, "path")};
            if (dis.type != "value" && dis.type != "pattern" && dis.type != "type" && dis.type != "exists" &&
                dis.type != "profile")
              return invalid(where + ": unknown discriminator type '" + dis.type + "'");
            pe->discriminators.push_back(std::move(dis));
          }
    }
    if (auto it = e.FindMember("constraint"); it != e.MemberEnd() && it->value.IsArray()) {
      for (const auto& c : it->value.GetArray()) {
        if (!c.IsObject()) continue;
        ProfileConstraint pc;
        pc.key = str_member(c, "key");
        pc.severity = str_member(c, "severity") == "warning" ? Severity::Warning : Severity::Error;
        pc.human = str_member(c, "human");
        pc.expression = str_member(c, "expression");
        if (pc.key.empty()) return invalid(where + ": a constraint has no key");
        if (!pc.expression.empty()) {
          fhirpath::CompileOptions opts;
          opts.definitions = &defs_;
          if (Status s = fhirpath::compile(pc.expression, opts, &pc.compiled); !s)
            return invalid(where + ": constraint " + pc.key + " does not compile: " + s.message());
          pc.guard = analyse_invariant(pc.expression);
        }
        pe->constraints.push_back(std::move(pc));
      }
    }
    return Status::ok();
  }

  const fhir::Definitions& defs_;
  Profile* p_;
  std::unordered_map<std::string, ProfileElement*> by_id_;
};

void collect_snapshot(const ProfileElement& pe, std::vector<SnapshotElement>* out) {
  SnapshotElement s;
  s.id = pe.id;
  s.path = pe.path;
  s.slice_name = pe.slice_name;
  s.min = pe.min;
  s.max = pe.max;
  s.types = pe.types;
  s.from_differential = pe.from_differential;
  s.has_fixed = pe.fixed != nullptr;
  s.has_pattern = pe.pattern != nullptr;
  s.binding_strength = pe.binding_strength;
  s.binding_value_set = pe.binding_value_set;
  out->push_back(std::move(s));
  for (const ProfileElement* c : pe.children) collect_snapshot(*c, out);
  for (const ProfileElement* c : pe.slices) collect_snapshot(*c, out);
}

// The snapshot as FHIR ElementDefinitions: every element of the base type
// (backbone elements expanded, data types not, as the spec's snapshots do),
// merged with the differential; slices follow their sliced element's children.
class SnapshotWriter {
 public:
  SnapshotWriter(rapidjson::Document::AllocatorType& a) : a_(a) {}

  void element(const ProfileElement& pe, rapidjson::Value* out) {
    rapidjson::Value e(rapidjson::kObjectType);
    e.AddMember("id", str(pe.id), a_);
    e.AddMember("path", str(pe.path), a_);
    if (!pe.slice_name.empty()) e.AddMember("sliceName", str(pe.slice_name), a_);
    e.AddMember("min", pe.min, a_);
    e.AddMember("max", str(pe.max == UINT32_MAX ? "*" : std::to_string(pe.max)), a_);
    if (pe.source && pe.source->HasMember("type")) {
      e.AddMember("type", rapidjson::Value((*pe.source)["type"], a_), a_);
    } else if (pe.path.find('.') != std::string::npos) {
      rapidjson::Value types(rapidjson::kArrayType);
      for (const std::string& t : pe.types) {
        rapidjson::Value type(rapidjson::kObjectType);
        type.AddMember("code", str(t.find('.') != std::string::npos ? "BackboneElement" : t), a_);
        types.PushBack(type, a_);
      }
      e.AddMember("type", types, a_);
    }
    if (!pe.binding_strength.empty() && !(pe.source && pe.source->HasMember("binding"))) {
      rapidjson::Value b(rapidjson::kObjectType);
      b.AddMember("strength", str(pe.binding_strength), a_);
      b.AddMember("valueSet", str(pe.binding_value_set), a_);
      e.AddMember("binding", b, a_);
    }
    if (pe.source)
      for (auto it = pe.source->MemberBegin(); it != pe.source->MemberEnd(); ++it) {
        std::string_view name(it->name.GetString(), it->name.GetStringLength());
        if (name == "id" || name == "path" || name == "sliceName" || name == "min" || name == "max" || name == "type")
          continue;
        e.AddMember(rapidjson::Value(it->name, a_), rapidjson::Value(it->value, a_), a_);
      }
    out->PushBack(e, a_);
    children(pe, out);
    for (const ProfileElement* s : pe.slices) element(*s, out);
  }

 private:
  rapidjson::Value str(const std::string& s) { return rapidjson::Value(s.c_str(), static_cast<rapidjson::SizeType>(s.size()), a_); }

  // Children in the base order; constrained ones from the profile, the others from the base.
  void children(const ProfileElement& pe, rapidjson::Value* out) {
    const fhir::TypeDef* t = pe.type_def;
    if (!t || expanding_.size() > 32) return;
    expanding_.push_back(t);
    bool expand_base = t->kind == fhir::TypeKind::Backbone || pe.path.find('.') == std::string::npos;
    for (const fhir::ElementDef& base : t->elements) {
      const ProfileElement* constrained = nullptr;
      for (const ProfileElement* c : pe.children)
        if (c->name == base.name) constrained = c;
      if (constrained) {
        element(*constrained, out);
      } else if (expand_base) {
        ProfileElement b;
        std::string segment = base.is_choice ? base.name + "[x]" : base.name;
        b.id = pe.id + "." + segment;
        b.path = pe.path + "." + segment;
        b.name = base.name;
        b.min = base.min;
        b.max = base.max;
        for (const fhir::TypeDef* bt : base.types) b.types.push_back(bt->name);
        b.binding_strength = base.binding_strength;
        b.binding_value_set = base.binding_value_set;
        // A contentReference back to an enclosing backbone (Consent.provision.provision)
        // is not expanded again.
        if (base.types.size() == 1 && base.types[0]->kind == fhir::TypeKind::Backbone &&
            std::find(expanding_.begin(), expanding_.end(), base.types[0]) == expanding_.end())
          b.type_def = base.types[0];
        element(b, out);
      }
    }
    expanding_.pop_back();
  }

  rapidjson::Document::AllocatorType& a_;
  std::vector<const fhir::TypeDef*> expanding_;
};

}  // namespace

std::string Validator::snapshot_json(std::string_view url) const {
  auto it = profiles_.find(url);
  if (it == profiles_.end()) return {};
  rapidjson::Document doc;
  doc.CopyFrom(it->second->doc, doc.GetAllocator());
  doc.RemoveMember("snapshot");
  rapidjson::Value elements(rapidjson::kArrayType);
  SnapshotWriter(doc.GetAllocator()).element(*it->second->root, &elements);
  rapidjson::Value snapshot(rapidjson::kObjectType);
  snapshot.AddMember("element", elements, doc.GetAllocator());
  doc.AddMember("snapshot", snapshot, doc.GetAllocator());
  rapidjson::StringBuffer buffer;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> writer(buffer);
  writer.SetIndent(' ', 2);
  doc.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize()) + "\n";
}

Status Validator::add_profile_json(std::string_view json) {
  if (json.size() > kMaxProfileBytes) return invalid("profile too large");
  auto p = std::make_unique<Profile>();
  p->text.assign(json);
  p->doc.ParseInsitu(p->text.data());
  if (p->doc.HasParseError() || !p->doc.IsObject()) return invalid("a profile is not a JSON object");
  if (str_member(p->doc, "resourceType") != "StructureDefinition") return invalid("a profile must be a StructureDefinition");
  p->url = str_member(p->doc, "url");
  p->name = str_member(p->doc, "name");
  p->type = str_member(p->doc, "type");
  if (p->url.empty() || p->type.empty()) return invalid("a profile needs url and type");
  if (str_member(p->doc, "derivation") != "constraint") return invalid("profile " + p->url + ": derivation must be constraint");
  std::string base = str_member(p->doc, "baseDefinition");
  if (base != std::string(kCoreSd) + p->type)
    return invalid("profile " + p->url + ": baseDefinition must be the R4 definition of " + p->type);
  auto diff = p->doc.FindMember("differential");
  if (diff == p->doc.MemberEnd() || !diff->value.IsObject() || !diff->value.HasMember("element") ||
      !diff->value["element"].IsArray())
    return invalid("profile " + p->url + ": no differential.element");
  SnapshotBuilder builder(defs_, p.get());
  if (Status s = builder.build(diff->value["element"]); !s) return s;
  std::string url = p->url;
  profiles_[url] = std::move(p);
  return Status::ok();
}

Status Validator::load_data_profiles() {
  std::error_code ec;
  std::filesystem::path dir = fhir::data_path("profiles/data");
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".json") names.push_back(e.path().filename().string());
  if (ec) return invalid("cannot list " + dir.string() + ": " + ec.message(), "profile-data-missing");
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    std::string text;
    if (Status s = fhir::read_data_file("profiles/data/" + name, &text); !s) return s;
    // Only StructureDefinitions here; the other files are configuration.
    if (text.find("\"StructureDefinition\"") == std::string::npos) continue;
    if (Status s = add_profile_json(text); !s) return invalid(name + ": " + s.message());
  }
  return Status::ok();
}

Status Validator::require_profile(std::string type, std::string url, std::string when) {
  if (!profiles_.count(url)) return invalid("required profile " + url + " is not loaded");
  if (profiles_.at(url)->type != type) return invalid("required profile " + url + " does not constrain " + type);
  auto r = std::make_unique<Requirement>();
  r->type = std::move(type);
  r->url = std::move(url);
  r->when = std::move(when);
  if (!r->when.empty()) {
    fhirpath::CompileOptions opts;
    opts.definitions = &defs_;
    if (Status s = fhirpath::compile(r->when, opts, &r->condition); !s)
      return invalid("condition of required profile " + r->url + ": " + s.message());
  }
  required_.push_back(std::move(r));
  return Status::ok();
}

Status Validator::load_required_profiles() {
  std::string text;
  if (Status s = fhir::read_data_file("profiles/data/required-profiles.json", &text); !s) return s;
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("required") || !doc["required"].IsArray())
    return invalid("required-profiles.json: expected {\"required\": [{\"type\", \"profile\", \"when\"?}]}");
  for (const auto& r : doc["required"].GetArray()) {
    if (!r.IsObject()) continue;
    if (Status s = require_profile(str_member(r, "type"), str_member(r, "profile"), str_member(r, "when")); !s) return s;
  }
  return Status::ok();
}

void Validator::clear_required_profiles() { required_.clear(); }

std::vector<std::string> Validator::required_profiles(std::string_view type) const {
  std::vector<std::string> out;
  for (const auto& r : required_)
    if (r->type == type) out.push_back(r->url);
  return out;
}

bool Validator::has_profile(std::string_view url) const { return profiles_.find(url) != profiles_.end(); }

std::vector<SnapshotElement> Validator::snapshot(std::string_view url) const {
  std::vector<SnapshotElement> out;
  auto it = profiles_.find(url);
  if (it != profiles_.end()) collect_snapshot(*it->second->root, &out);
  return out;
}

void Validator::register_check(std::string key, CheckFunction check) { checks_[std::move(key)] = std::move(check); }

const CheckFunction* Validator::check(std::string_view key) const {
  auto it = checks_.find(key);
  return it == checks_.end() ? nullptr : &it->second;
}

// ---------------------------------------------------------------------------
// Validation against a profile.

namespace {

class ProfileChecker {
 public:
  ProfileChecker(const Validator& v, const Profile& profile, const Node& resource, const Node* bundle,
                 const std::unordered_map<std::string, std::unique_ptr<Profile>, fhir::StringHash, std::equal_to<>>&
                     profiles,
                 std::vector<Issue>* out, int nesting = 0)
      : v_(v), profile_(profile), resource_(resource), bundle_(bundle), profiles_(profiles), out_(out),
        nesting_(nesting) {}

  void run(const std::string& location) { check_item(*profile_.root, resource_, Loc::root(location), 0); }

 private:
  void report(Severity severity, const char* code, std::string message, std::string id, std::string location) {
    Issue i;
    i.severity = severity;
    i.code = code;
    i.diagnostics = "profile " + profile_.name + ": " + std::move(message);
    i.expression = std::move(location);
    i.message_id = std::move(id);
    out_->push_back(std::move(i));
  }

  // An issue location, built into text only when an issue is reported: most
  // items are valid, and the text of every item's path cost more than its checks.
  struct Loc {
    enum class Kind { Root, Member, Item } kind = Kind::Root;
    const Loc* parent = nullptr;
    std::string_view text;  // Root: the whole location; Member: the element name
    const Node* item = nullptr;
    size_t index = 0;

    static Loc root(std::string_view text) { return {Kind::Root, nullptr, text, nullptr, 0}; }
    std::string str() const {
      switch (kind) {
        case Kind::Root:
          return std::string(text);
        case Kind::Member:
          return parent->str() + "." + std::string(text);
        case Kind::Item:
          return item_location(parent->str(), *item, index);
      }
      return {};
    }
    operator std::string() const { return str(); }
    friend std::string operator+(const Loc& l, std::string_view suffix) { return l.str() + std::string(suffix); }
  };

  static std::string item_location(const std::string& parent, const Node& item, size_t index) {
    if (item.def && item.def->is_choice && item.type)
      return parent + "." + item.def->name + ".ofType(" + item.type->name + ")";
    std::string loc = parent + "." + std::string(item.name);
    if (item.def && item.def->is_array()) loc += "[" + std::to_string(index) + "]";
    return loc;
  }

  static std::string element_label(const ProfileElement& pe) { return pe.is_choice ? pe.name + "[x]" : pe.name; }

  void check_list(const ProfileElement& pe, const std::vector<const Node*>& items, const Loc& parent_loc,
                  int depth) {
    size_t count = items.size();
    Loc loc{Loc::Kind::Member, &parent_loc, pe.name, nullptr, 0};
    if (pe.min > pe.base_min && count < pe.min)
      report(Severity::Error, "required",
             "element '" + element_label(pe) + "' is required (minimum " + std::to_string(pe.min) + ", found " +
                 std::to_string(count) + ")",
             "card-min", loc);
    if (pe.max < pe.base_max && count > pe.max)
      report(Severity::Error, "structure",
             "element '" + element_label(pe) + "' may occur at most " + std::to_string(pe.max) + " time(s), found " +
                 std::to_string(count),
             "card-max", loc);
    std::vector<const ProfileElement*> slice_of(count, nullptr);
    if (pe.sliced) {
      for (size_t i = 0; i < count; ++i)
        for (const ProfileElement* s : pe.slices)
          if (matches_slice(pe, *s, *items[i])) {
            slice_of[i] = s;
            break;
          }
      for (const ProfileElement* s : pe.slices) {
        size_t n = static_cast<size_t>(std::count(slice_of.begin(), slice_of.end(), s));
        if (n < s->min)
          report(Severity::Error, "required",
                 "slice '" + s->slice_name + "' of " + pe.name + " needs at least " + std::to_string(s->min) +
                     " item(s), found " + std::to_string(n),
                 "slice-min", loc);
        if (n > s->max)
          report(Severity::Error, "structure",
                 "slice '" + s->slice_name + "' of " + pe.name + " allows at most " + std::to_string(s->max) +
                     " item(s), found " + std::to_string(n),
                 "slice-max", loc);
      }
    }
    for (size_t i = 0; i < count; ++i) {
      Loc item_loc{Loc::Kind::Item, &parent_loc, {}, items[i], i};
      check_item(pe, *items[i], item_loc, depth + 1);
      if (slice_of[i]) {
        check_item(*slice_of[i], *items[i], item_loc, depth + 1);
      } else if (pe.sliced && pe.slicing_rules == "closed") {
        report(Severity::Error, "structure", "this " + pe.name + " matches none of the slices and the slicing is closed",
               "slice-unmatched", item_loc);
      }
    }
  }

  // The expected value of a discriminator in a slice: fixed/pattern of the
  // element at `path` inside the slice, or the member of a pattern higher up.
  const rapidjson::Value* expected_at(const ProfileElement& slice, const std::string& path, bool* exact) const {
    std::vector<std::string> segs;
    if (path != "$this" && !path.empty()) {
      size_t start = 0;
      while (start <= path.size()) {
        size_t dot = path.find('.', start);
        if (dot == std::string::npos) dot = path.size();
        segs.push_back(path.substr(start, dot - start));
        start = dot + 1;
      }
    }
    const ProfileElement* pe = &slice;
    size_t i = 0;
    const rapidjson::Value* best = nullptr;
    size_t best_at = 0;
    while (true) {
      const rapidjson::Value* here = pe->fixed ? pe->fixed : pe->pattern;
      if (here) {
        best = here;
        best_at = i;
        *exact = pe->fixed != nullptr;
      }
      if (i == segs.size()) break;
      const ProfileElement* next = nullptr;
      for (const ProfileElement* c : pe->children)
        if (c->name == segs[i]) next = c;
      if (!next) break;
      pe = next;
      ++i;
    }
    if (!best) return nullptr;
    for (size_t k = best_at; k < segs.size(); ++k) {
      if (!best->IsObject()) return nullptr;
      auto it = best->FindMember(segs[k].c_str());
      if (it == best->MemberEnd()) return nullptr;
      best = &it->value;
      if (best->IsArray()) {
        if (best->Size() != 1) return nullptr;
        best = &(*best)[0];
      }
    }
    return best;
  }

  static void nodes_at(const Node& n, const std::vector<std::string>& segs, size_t i, std::vector<const Node*>* out) {
    if (i == segs.size()) {
      out->push_back(&n);
      return;
    }
    for (const Node& c : n.children)
      if (c.def && (c.def->name == segs[i] || c.name == segs[i])) nodes_at(c, segs, i + 1, out);
  }

  bool matches_slice(const ProfileElement& sliced, const ProfileElement& slice, const Node& item) const {
    if (sliced.discriminators.empty()) return false;
    for (const Discriminator& d : sliced.discriminators) {
      if (d.type == "value" || d.type == "pattern") {
        if (d.path == "url" && !slice.type_profiles.empty()) {
          if (item.child_value("url") != slice.type_profiles[0]) return false;
          continue;
        }
        bool exact = false;
        const rapidjson::Value* expected = expected_at(slice, d.path, &exact);
        if (!expected) return false;
        std::vector<std::string> segs;
        if (d.path != "$this") {
          size_t start = 0;
          while (start <= d.path.size()) {
            size_t dot = d.path.find('.', start);
            if (dot == std::string::npos) dot = d.path.size();
            segs.push_back(d.path.substr(start, dot - start));
            start = dot + 1;
          }
        }
        std::vector<const Node*> found;
        nodes_at(item, segs, 0, &found);
        bool any = false;
        for (const Node* f : found)
          if (json_matches(*expected, *f, exact && d.type == "value")) any = true;
        if (!any) return false;
      } else if (d.type == "type") {
        if (slice.types.empty() || !item.type || item.type->name != slice.types[0]) return false;
      } else if (d.type == "exists") {
        // The slice requires (min >= 1) or forbids (max 0) the element.
        std::vector<std::string> segs = path_segments(d.path);
        const ProfileElement* pe = element_at(slice, segs);
        if (!pe || (pe->max != 0 && pe->min == 0)) return false;
        std::vector<const Node*> found;
        nodes_at(item, segs, 0, &found);
        if (found.empty() != (pe->max == 0)) return false;
      } else if (d.type == "profile") {
        if (!conforms_to_slice_profile(slice, d.path, item)) return false;
      } else {
        return false;
      }
    }
    return true;
  }

  static std::vector<std::string> path_segments(std::string_view path) {
    std::vector<std::string> segs;
    if (path.empty() || path == "$this") return segs;
    if (path.starts_with("$this.")) path.remove_prefix(6);
    size_t start = 0;
    while (start <= path.size()) {
      size_t dot = path.find('.', start);
      if (dot == std::string_view::npos) dot = path.size();
      segs.emplace_back(path.substr(start, dot - start));
      start = dot + 1;
    }
    return segs;
  }

  // The element of the slice at a path of child names (nullptr when the slice does not constrain it).
  static const ProfileElement* element_at(const ProfileElement& slice, const std::vector<std::string>& segs) {
    const ProfileElement* pe = &slice;
    for (const std::string& s : segs) {
      const ProfileElement* next = nullptr;
      for (const ProfileElement* c : pe->children)
        if (c->name == s) next = c;
      if (!next) return nullptr;
      pe = next;
    }
    return pe;
  }

  // The resource a reference names: "#id" in the resource, else an entry of the Bundle (fullUrl or Type/id).
  const Node* resolve(std::string_view ref) const {
    const Node* found = nullptr;
    if (ref.size() > 1 && ref.front() == '#') {
      resource_.for_each_child("contained", [&](const Node& c) {
        if (!found && fhir::resource_id(c) == ref.substr(1)) found = &c;
      });
      return found;
    }
    if (!bundle_ || ref.empty()) return nullptr;
    bundle_->for_each_child("entry", [&](const Node& e) {
      const Node* r = e.child("resource");
      if (found || !r) return;
      std::string_view type = fhir::resource_type(*r), id = fhir::resource_id(*r);
      if (e.child_value("fullUrl") == ref ||
          (!id.empty() && ref.size() == type.size() + 1 + id.size() && ref.starts_with(type) &&
           ref[type.size()] == '/' && ref.ends_with(id)))
        found = r;
    });
    return found;
  }

  // Profile discriminator: the element at `path` in the item (or the resource
  // it references, with resolve()) meets one of the profiles the slice gives
  // that element (type.profile, or type.targetProfile with resolve()). Meeting
  // means no error from the profile's own rules; the base rules are the walk's.
  bool conforms_to_slice_profile(const ProfileElement& slice, std::string_view path, const Node& item) const {
    bool through_reference = false;
    if (path.ends_with("resolve()")) {
      through_reference = true;
      path.remove_suffix(9);
      if (path.ends_with('.')) path.remove_suffix(1);
    }
    std::vector<std::string> segs = path_segments(path);
    const ProfileElement* pe = element_at(slice, segs);
    if (!pe || nesting_ >= kMaxNesting) return false;
    const std::vector<std::string>& urls = through_reference ? pe->target_profiles : pe->type_profiles;
    std::vector<const Node*> found;
    nodes_at(item, segs, 0, &found);
    for (const Node* n : found) {
      const Node* target = n;
      if (through_reference) {
        target = resolve(n->child_value("reference"));
        if (!target) continue;
      }
      for (const std::string& url : urls) {
        auto it = profiles_.find(url);
        if (it == profiles_.end()) continue;
        const Profile& p = *it->second;
        bool is_resource = target->is_resource();
        std::string_view type = is_resource ? fhir::resource_type(*target)
                                            : (target->type ? std::string_view(target->type->name) : std::string_view());
        if (p.type != type) continue;
        std::vector<Issue> scratch;
        ProfileChecker nested(v_, p, is_resource ? *target : resource_, bundle_, profiles_, &scratch, nesting_ + 1);
        nested.check_item(*p.root, *target, Loc::root(type), 0);
        if (!has_errors(scratch)) return true;
      }
    }
    return false;
  }

  void check_item(const ProfileElement& pe, const Node& node, const Loc& loc, int depth) {
    if (depth > 64) return;
    if (pe.types_restricted && node.type &&
        std::find(pe.types.begin(), pe.types.end(), node.type->name) == pe.types.end()) {
      std::string allowed;
      for (const std::string& t : pe.types) allowed += (allowed.empty() ? "" : ", ") + t;
      report(Severity::Error, "structure", "type " + node.type->name + " is not allowed here (only " + allowed + ")",
             "type-not-allowed", loc);
      return;
    }
    if (pe.fixed && !json_matches(*pe.fixed, node, true))
      report(Severity::Error, "value", "value must be exactly " + json_text(*pe.fixed), "fixed-mismatch", loc);
    if (pe.pattern && !json_matches(*pe.pattern, node, false))
      report(Severity::Error, "value", "value must contain " + json_text(*pe.pattern), "pattern-mismatch", loc);
    if (pe.min_value || pe.max_value) check_range(pe, node, loc);
    if (pe.binding_from_profile && node.type) check_binding(pe, node, loc);
    if (!pe.target_types.empty() && node.type && node.type->name == "Reference") check_reference(pe, node, loc);
    for (const ProfileConstraint& c : pe.constraints) evaluate(c, node, loc);
    if (node.type && node.type->name == "Extension")
      for (const std::string& url : pe.type_profiles)
        if (auto it = profiles_.find(url); it != profiles_.end() && it->second.get() != &profile_) {
          ProfileChecker nested(v_, *it->second, resource_, bundle_, profiles_, out_, nesting_);
          nested.check_item(*it->second->root, node, loc, depth + 1);
        }
    for (const ProfileElement* child : pe.children) {
      std::vector<const Node*> items;
      for (const Node& c : node.children)
        if (c.def && c.def->name == child->name) items.push_back(&c);
      check_list(*child, items, loc, depth + 1);
    }
  }

  void check_range(const ProfileElement& pe, const Node& node, const Loc& loc) {
    const Node* value_node = &node;
    if (node.type && node.type->name == "Quantity") value_node = node.child("value");
    if (!value_node || !value_node->has_value) return;
    const std::string& v = value_node->value;
    auto compare = [&](const rapidjson::Value& limit) -> int {  // sign of (v - limit)
      if (limit.IsNumber()) {
        double d = std::strtod(v.c_str(), nullptr);
        return d < limit.GetDouble() ? -1 : d > limit.GetDouble() ? 1 : 0;
      }
      if (limit.IsObject() && limit.HasMember("value") && limit["value"].IsNumber()) {
        double d = std::strtod(v.c_str(), nullptr);
        double l = limit["value"].GetDouble();
        return d < l ? -1 : d > l ? 1 : 0;
      }
      if (limit.IsString()) {  // date, dateTime, instant, time: same-precision text order
        std::string_view l(limit.GetString(), limit.GetStringLength());
        std::string_view a(v);
        size_t n = std::min(a.size(), l.size());
        int c = a.substr(0, n).compare(l.substr(0, n));
        return c < 0 ? -1 : c > 0 ? 1 : 0;
      }
      return 0;
    };
    if (pe.min_value && compare(*pe.min_value) < 0)
      report(Severity::Error, "value", "value " + v + " is below the minimum " + json_text(*pe.min_value), "min-value",
             loc);
    if (pe.max_value && compare(*pe.max_value) > 0)
      report(Severity::Error, "value", "value " + v + " is above the maximum " + json_text(*pe.max_value), "max-value",
             loc);
  }

  void check_binding(const ProfileElement& pe, const Node& node, const Loc& loc) {
    bool required = pe.binding_strength == "required";
    if (!required && pe.binding_strength != "extensible") return;
    struct Coded {
      std::string_view system, code;
    };
    std::vector<Coded> codes;
    const std::string& type = node.type->name;
    if (type == "code" || type == "string" || type == "uri") {
      if (node.has_value) codes.push_back({{}, node.value});
    } else if (type == "Coding") {
      if (!node.child_value("code").empty()) codes.push_back({node.child_value("system"), node.child_value("code")});
    } else if (type == "CodeableConcept") {
      node.for_each_child("coding", [&](const Node& c) {
        if (!c.child_value("code").empty()) codes.push_back({c.child_value("system"), c.child_value("code")});
      });
    }
    if (codes.empty()) return;
    const terminology::Store* tx = v_.terminology();
    if (!tx) {
      report(Severity::Information, "informational", "binding to " + pe.binding_value_set + " not checked",
             "binding-not-checked", loc);
      return;
    }
    bool unchecked = false;
    std::string message;
    for (const Coded& c : codes) {
      terminology::CodeResult r = tx->validate_code(pe.binding_value_set, c.system, c.code);
      if (r.validity == terminology::Validity::Valid) return;
      if (r.validity == terminology::Validity::NotChecked) unchecked = true;
      if (message.empty()) message = r.message;
    }
    if (unchecked)
      report(Severity::Information, "informational", "code not checked: " + message, "binding-not-checked", loc);
    else if (required)
      report(Severity::Error, "code-invalid", message + " (required binding)", "binding-required", loc);
    else
      report(Severity::Warning, "code-invalid", message + " (extensible binding)", "binding-extensible", loc);
  }

  std::string_view target_type(std::string_view ref) const {
    if (ref.empty()) return {};
    auto type_of = [](const Node* n) { return n ? fhir::resource_type(*n) : std::string_view(); };
    if (ref.front() == '#') {
      const Node* found = nullptr;
      resource_.for_each_child("contained", [&](const Node& c) {
        if (!found && fhir::resource_id(c) == ref.substr(1)) found = &c;
      });
      return type_of(found);
    }
    if (bundle_) {
      const Node* found = nullptr;
      bundle_->for_each_child("entry", [&](const Node& e) {
        if (!found && e.child_value("fullUrl") == ref) found = e.child("resource");
      });
      if (found) return type_of(found);
    }
    if (ref.starts_with("urn:")) return {};
    std::string_view path = ref.substr(0, ref.find('?'));
    if (size_t h = path.find("/_history/"); h != std::string_view::npos) path = path.substr(0, h);
    size_t last = path.rfind('/');
    if (last == std::string_view::npos) return ref.find('?') != std::string_view::npos ? path : std::string_view();
    size_t prev = path.rfind('/', last - 1);
    return path.substr(prev == std::string_view::npos ? 0 : prev + 1,
                       last - (prev == std::string_view::npos ? 0 : prev + 1));
  }

  void check_reference(const ProfileElement& pe, const Node& node, const Loc& loc) {
    std::string_view type = target_type(node.child_value("reference"));
    if (type.empty() || !v_.definitions().resource_type(type)) return;
    if (std::find(pe.target_types.begin(), pe.target_types.end(), type) != pe.target_types.end()) return;
    std::string allowed;
    for (const std::string& t : pe.target_types) allowed += (allowed.empty() ? "" : ", ") + t;
    report(Severity::Error, "structure", "reference to a " + std::string(type) + " where only " + allowed + " is allowed",
           "ref-wrong-type", loc + ".reference");
  }

  void evaluate(const ProfileConstraint& c, const Node& node, const Loc& loc) {
    if (!c.compiled) {
      const CheckFunction* fn = v_.check(c.key);
      if (!fn) {
        report(Severity::Information, "informational", "constraint " + c.key + " has no expression and no named check",
               "invariant-not-run", loc);
        return;
      }
      std::vector<CheckFinding> findings;
      (*fn)(node, &findings);
      for (CheckFinding& f : findings)
        if (!f.message_id.empty())
          report(f.severity, f.message_id == "identifier-format-invalid" ? "value" : "invariant", std::move(f.message),
                 f.message_id, loc + f.location_suffix);
      return;
    }
    if (c.guard.holds_without_evaluation(node)) return;
    fhirpath::Environment env;
    env.resource = &resource_;
    env.root_resource = &resource_;
    fhirpath::Collection input{fhirpath::Value::of_node(&node)}, result;
    Status st = c.compiled->evaluate(input, env, &result);
    if (!st) {
      report(Severity::Information, "informational", "constraint " + c.key + " could not be evaluated: " + st.message(),
             "invariant-not-run", loc);
      return;
    }
    if (result.size() == 1 && result[0].kind() == fhirpath::ValueKind::Boolean && !result[0].as_bool())
      report(c.severity, "invariant", "constraint " + c.key + " failed: " + c.human, "inv-" + c.key, loc);
  }

  const Validator& v_;
  const Profile& profile_;
  const Node& resource_;
  const Node* bundle_;
  const std::unordered_map<std::string, std::unique_ptr<Profile>, fhir::StringHash, std::equal_to<>>& profiles_;
  std::vector<Issue>* out_;
  // Profile discriminators check items against other profiles, whose slices may do the same.
  static constexpr int kMaxNesting = 4;
  int nesting_ = 0;
};

}  // namespace

void Validator::apply_profiles(const Node& resource, const ValidationOptions& options, std::vector<Issue>* out) const {
  const Node* bundle = fhir::resource_type(resource) == "Bundle" ? &resource : nullptr;
  auto issue = [&](Severity severity, const char* code, std::string text, const char* id, const std::string& loc) {
    Issue i;
    i.severity = severity;
    i.code = code;
    i.diagnostics = std::move(text);
    i.expression = loc;
    i.message_id = id;
    out->push_back(std::move(i));
  };
  auto one = [&](const Node& r, const std::string& loc, bool root) {
    std::string_view type = fhir::resource_type(r);
    std::vector<std::pair<std::string, bool>> urls;  // url, explicitly asked
    auto add = [&](std::string url, bool asked) {
      for (auto& [u, a] : urls)
        if (u == url) {
          a = a || asked;
          return;
        }
      urls.emplace_back(std::move(url), asked);
    };
    if (const Node* meta = r.child("meta"))
      meta->for_each_child("profile", [&](const Node& p) {
        if (p.has_value) add(p.value.substr(0, p.value.find('|')), false);
      });
    if (root)
      for (const std::string& p : options.profiles) add(p.substr(0, p.find('|')), true);
    if (options.apply_required_profiles)
      for (const auto& req : required_) {
        if (req->type != type) continue;
        if (req->condition) {
          fhirpath::Environment env;
          env.resource = &r;
          fhirpath::Collection result;
          if (!req->condition->evaluate(&r, env, &result) || result.size() != 1 ||
              result[0].kind() != fhirpath::ValueKind::Boolean || !result[0].as_bool())
            continue;
        }
        add(req->url, true);
      }
    for (const auto& [url, asked] : urls) {
      auto it = profiles_.find(url);
      if (it == profiles_.end()) {
        if (!defs_.structure_definition_file(url).empty())
          issue(Severity::Information, "informational",
                "profile " + url + " was not checked (profiles of the R4 package are not enforced here)",
                "profile-not-checked", loc);
        else
          issue(asked ? Severity::Error : Severity::Warning, "not-supported", "unknown profile " + url,
                "profile-unknown", loc);
        continue;
      }
      const Profile& p = *it->second;
      if (p.type != type) {
        issue(Severity::Error, "structure", "profile " + url + " constrains " + p.type + ", not " + std::string(type),
              "profile-wrong-type", loc);
        continue;
      }
      ProfileChecker(*this, p, r, bundle, profiles_, out).run(loc);
    }
  };
  std::string loc = options.location_prefix.empty() ? std::string(resource.name) : options.location_prefix;
  one(resource, loc, true);
  if (bundle) {
    size_t i = 0;
    resource.for_each_child("entry", [&](const Node& entry) {
      if (const Node* r = entry.child("resource")) one(*r, loc + ".entry[" + std::to_string(i) + "].resource", false);
      ++i;
    });
  }
}

}  // namespace espace::profiles
