// The base-spec validator: a single walk over the Node tree.
//
// Message ids (stable; tests assert them):
//   card-min / card-max        element present fewer / more times than allowed
//   format-invalid             primitive value breaks its type's format or calendar
//   xhtml-invalid              narrative div is not well-formed XHTML
//   ele-1, ext-1               the two universal invariants (evaluated natively)
//   txt-1, txt-2               narrative: allowed elements/attributes, some content
//   inv-<key>                  any other invariant, e.g. inv-dom-3, inv-pat-1
//   invariant-not-run          an invariant could not be compiled or evaluated
//   binding-required           code not in a required value set (error)
//   binding-extensible         code not in an extensible value set (warning)
//   binding-not-checked        membership cannot be decided here (information)
//   ref-wrong-type             reference to a resource type the element does not allow
//   ref-contained-missing      "#id" names no contained resource
//   ext-value-type             an extension defined in the package given a value of a type it does not allow
//   ext-no-value               a complex extension (value[x] max 0) given a value
//   profile-*, slice-*, ...    profiles: see profile_rules.cpp
#include <rapidjson/document.h>

#include <algorithm>
#include <cstdio>
#include <unordered_set>

#include "espace/fhir/read_file.h"
#include "espace/fhir/xml.h"
#include "espace/fhirpath/fhirpath.h"
#include "espace/profiles/validator.h"
#include "espace/profiles/french_identifiers.h"
#include "invariant_guards.h"
#include "profile_rules.h"
#include "xhtml_rules.h"

namespace espace::profiles {

using fhir::read_file;

using fhir::ElementDef;
using fhir::Issue;
using fhir::Node;
using fhir::Severity;
using fhir::TypeDef;

namespace {

constexpr std::string_view kCoreSd = "http://hl7.org/fhir/StructureDefinition/";
const std::string kIdType = "id";


// Equality with a literal: compares sizes first, no strlen (runs for every node).
constexpr bool eq(std::string_view a, std::string_view b) { return a == b; }

std::string str_member(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !it->value.IsString()) return {};
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

// Invariants the validator evaluates itself: ele-1 and ext-1 for speed (they
// apply to nearly every element); txt-1/txt-2 because their R4 expression is
// just htmlChecks(), checked with the narrative's XHTML.
enum class Native { None, Ele1, Ext1, NarrativeRules };

// Invariants evaluated on nearly every resource, entry or reference whose
// FHIRPath costs far more than the question: decided natively, exactly
// (dom-2, dom-4, dom-5, dom-6, bdl-5), or in the common case only, the
// compiled expression deciding the rest (ref-1, dom-3, bdl-3, bdl-4, bdl-7,
// bdl-8, per-1). Tied to the exact R4 text, so that another expression under
// the same key is evaluated as written.
enum class Shortcut { None, Ref1, Dom2, Dom3, Dom4, Dom5, Dom6, Bdl3, Bdl4, Bdl5, Bdl7, Bdl8, Per1 };
enum class Decision { Unknown, Holds, Fails };
struct ShortcutText {
  std::string_view key, expression;
  Shortcut shortcut;
};
constexpr ShortcutText kExactShortcuts[] = {
    {"dom-2", "contained.contained.empty()", Shortcut::Dom2},
    {"dom-4", "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()", Shortcut::Dom4},
    {"dom-5", "contained.meta.security.empty()", Shortcut::Dom5},
    {"dom-6", "text.`div`.exists()", Shortcut::Dom6},
    {"bdl-5", "resource.exists() or request.exists() or response.exists()", Shortcut::Bdl5},
    {"bdl-8", "fullUrl.contains('/_history/').not()", Shortcut::Bdl8},
    {"per-1", "start.hasValue().not() or end.hasValue().not() or (start <= end)", Shortcut::Per1},
};
constexpr std::string_view kRef1 =
    "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))";
constexpr std::string_view kDom3 =
    "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | "
    "%resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = "
    "'#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = "
    "'#').exists()).not()).trace('unmatched', id).empty()";
constexpr std::string_view kBdl3 =
    "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction' or %resource.type = "
    "'history'))";
constexpr std::string_view kBdl4 =
    "entry.all(response.exists() = (%resource.type = 'batch-response' or %resource.type = 'transaction-response' or "
    "%resource.type = 'history'))";
constexpr std::string_view kBdl7 =
    "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId).isDistinct()";

}  // namespace

struct Invariant {
  std::string key;
  uint32_t key_id = 0;  // the same for every invariant with this key (cheap comparisons)
  Severity severity = Severity::Error;
  std::string human;
  std::string expression;
  std::shared_ptr<const fhirpath::Expression> compiled;
  std::string compile_error;  // non-empty: cannot run
  Native native = Native::None;
  Shortcut shortcut = Shortcut::None;
  InvariantGuard guard;  // when it holds without evaluation (absent elements)
};

struct ElementRules {
  std::vector<const Invariant*> invariants;
  // Resource types a Reference may point to; empty with any_target = any.
  std::vector<std::string> targets;
  bool any_target = true;
  uint32_t max_length = 0;
};

struct TypeRules {
  const TypeDef* type = nullptr;
  // Invariants of the type's own root element (data type / resource level).
  std::vector<const Invariant*> root_invariants;
  // Indexes of elements with min > 0.
  std::vector<uint32_t> required;
  // One per element of `type`, same index.
  std::vector<ElementRules> elements;
};

namespace {

struct RawConstraint {
  std::string key, severity, human, expression;
};
struct RawElement {
  std::vector<RawConstraint> constraints;
  std::vector<std::string> target_profiles;
  bool has_reference = false;
  uint32_t max_length = 0;
};
using RawSnapshot = std::unordered_map<std::string, RawElement>;

}  // namespace

struct Validator::Loaded {
  std::unordered_map<std::string, std::unique_ptr<RawSnapshot>> snapshots;  // by root type name
  std::unordered_map<std::string, std::unique_ptr<Invariant>> invariants;   // by key + expression
  std::unordered_map<std::string, uint32_t> key_ids;
  size_t native = 0;
  std::vector<std::string> not_compiled;
};

Validator::Validator(const fhir::Definitions& defs, const terminology::Store* terminology)
    : defs_(defs), terminology_(terminology), loaded_(std::make_unique<Loaded>()) {
  fr::register_checks(*this);
  // Every reachable type gets a slot now, so that lookups never insert.
  std::vector<const TypeDef*> pending;
  for (const std::string& name : defs.resource_type_names()) pending.push_back(defs.type(name));
  for (const char* name : {"Resource", "DomainResource", "Element", "BackboneElement"})
    if (const TypeDef* t = defs.type(name)) pending.push_back(t);
  while (!pending.empty()) {
    const TypeDef* t = pending.back();
    pending.pop_back();
    if (!t || slots_.count(t)) continue;
    slots_.emplace(t, std::make_unique<std::atomic<const TypeRules*>>(nullptr));
    for (const ElementDef& e : t->elements)
      for (const TypeDef* et : e.types) pending.push_back(et);
    if (t->base) pending.push_back(t->base);
  }
}

Validator::~Validator() = default;

const TypeRules& Validator::rules(const TypeDef* type) const {
  auto it = slots_.find(type);
  if (it != slots_.end()) {
    const TypeRules* r = it->second->load(std::memory_order_acquire);
    if (r) return *r;
  }
  std::lock_guard<std::mutex> lock(build_mutex_);
  if (it != slots_.end()) {
    const TypeRules* r = it->second->load(std::memory_order_acquire);
    if (r) return *r;
  }
  // A type outside the slots (not reachable from the resource types; not
  // expected) is cached under the lock so that it is built only once.
  if (it == slots_.end())
    if (auto other = unslotted_.find(type); other != unslotted_.end()) return *other->second;
  const TypeRules* built = build_rules(type);
  if (it != slots_.end())
    it->second->store(built, std::memory_order_release);
  else
    unslotted_.emplace(type, built);
  return *built;
}

// Called with build_mutex_ held.
const TypeRules* Validator::build_rules(const TypeDef* type) const {
  std::string root = type->name.substr(0, type->name.find('.'));
  auto snap_it = loaded_->snapshots.find(root);
  if (snap_it == loaded_->snapshots.end()) {
    auto snap = std::make_unique<RawSnapshot>();
    const TypeDef* root_type = defs_.type(root);
    std::string file = root_type ? defs_.structure_definition_file(root_type->url) : std::string();
    std::string text;
    rapidjson::Document doc;
    if (!file.empty() && read_file(file, &text)) doc.ParseInsitu(text.data());
    if (!file.empty() && !doc.HasParseError() && doc.IsObject() && doc.HasMember("snapshot") &&
        doc["snapshot"].IsObject() && doc["snapshot"].HasMember("element") && doc["snapshot"]["element"].IsArray()) {
      for (const auto& e : doc["snapshot"]["element"].GetArray()) {
        if (!e.IsObject() || e.HasMember("sliceName")) continue;
        RawElement raw;
        if (e.HasMember("constraint") && e["constraint"].IsArray())
          for (const auto& c : e["constraint"].GetArray())
            if (c.IsObject())
              raw.constraints.push_back(
                  {str_member(c, "key"), str_member(c, "severity"), str_member(c, "human"), str_member(c, "expression")});
        if (e.HasMember("type") && e["type"].IsArray())
          for (const auto& t : e["type"].GetArray()) {
            if (!t.IsObject() || str_member(t, "code") != "Reference") continue;
            raw.has_reference = true;
            if (t.HasMember("targetProfile") && t["targetProfile"].IsArray())
              for (const auto& p : t["targetProfile"].GetArray())
                if (p.IsString()) raw.target_profiles.emplace_back(p.GetString());
          }
        if (e.HasMember("maxLength") && e["maxLength"].IsUint()) raw.max_length = e["maxLength"].GetUint();
        (*snap)[str_member(e, "path")] = std::move(raw);
      }
    }
    snap_it = loaded_->snapshots.emplace(root, std::move(snap)).first;
  }
  const RawSnapshot& snap = *snap_it->second;

  auto intern = [&](const RawConstraint& c) -> const Invariant* {
    std::string id = c.key + "\n" + c.expression;
    auto it = loaded_->invariants.find(id);
    if (it != loaded_->invariants.end()) return it->second.get();
    auto inv = std::make_unique<Invariant>();
    inv->key = c.key;
    inv->key_id = loaded_->key_ids.emplace(c.key, static_cast<uint32_t>(loaded_->key_ids.size())).first->second;
    inv->severity = c.severity == "error" ? Severity::Error : Severity::Warning;
    inv->human = c.human;
    inv->expression = c.expression;
    if (c.key == "ele-1") inv->native = Native::Ele1;
    if (c.key == "ext-1") inv->native = Native::Ext1;
    if (c.key == "txt-1" || c.key == "txt-2") inv->native = Native::NarrativeRules;
    if (inv->native != Native::None) {
      ++loaded_->native;
    } else if (c.expression.empty()) {
      inv->compile_error = "no FHIRPath expression";
    } else {
      fhirpath::CompileOptions opts;
      opts.definitions = &defs_;
      fhir::Status st = fhirpath::compile(c.expression, opts, &inv->compiled);
      if (!st) inv->compile_error = st.message();
      inv->guard = analyse_invariant(c.expression);
      if (c.key == "ref-1" && c.expression == kRef1) inv->shortcut = Shortcut::Ref1;
      if (c.key == "dom-3" && c.expression == kDom3) inv->shortcut = Shortcut::Dom3;
      if (c.key == "bdl-3" && c.expression == kBdl3) inv->shortcut = Shortcut::Bdl3;
      if (c.key == "bdl-4" && c.expression == kBdl4) inv->shortcut = Shortcut::Bdl4;
      if (c.key == "bdl-7" && c.expression == kBdl7) inv->shortcut = Shortcut::Bdl7;
      for (const ShortcutText& t : kExactShortcuts)
        if (c.key == t.key && c.expression == t.expression) inv->shortcut = t.shortcut;
    }
    if (!inv->compile_error.empty())
      loaded_->not_compiled.push_back(c.key + " (" + root + "): " + inv->compile_error);
    return loaded_->invariants.emplace(id, std::move(inv)).first->second.get();
  };

  auto rules = std::make_unique<TypeRules>();
  rules->type = type;
  if (type->kind != fhir::TypeKind::Backbone) {
    auto it = snap.find(type->name);
    if (it != snap.end())
      for (const RawConstraint& c : it->second.constraints) rules->root_invariants.push_back(intern(c));
  }
  rules->elements.resize(type->elements.size());
  for (uint32_t i = 0; i < type->elements.size(); ++i) {
    const ElementDef& e = type->elements[i];
    if (e.min > 0) rules->required.push_back(i);
    auto it = snap.find(e.path);
    if (it == snap.end()) continue;
    ElementRules& er = rules->elements[i];
    for (const RawConstraint& c : it->second.constraints) er.invariants.push_back(intern(c));
    er.max_length = it->second.max_length;
    if (it->second.has_reference) {
      for (const std::string& p : it->second.target_profiles) {
        if (!std::string_view(p).starts_with(kCoreSd)) continue;  // profiles: later slice
        std::string name = p.substr(kCoreSd.size());
        if (name == "Resource" || name == "DomainResource") {
          er.targets.clear();
          break;
        }
        er.targets.push_back(std::move(name));
      }
      er.any_target = er.targets.empty();
    }
  }
  owned_.push_back(std::move(rules));
  return owned_.back().get();
}

const Validator::ExtensionRule* Validator::extension_rule(std::string_view url) const {
  {
    std::shared_lock lock(extensions_mutex_);
    auto it = extensions_.find(url);
    if (it != extensions_.end()) return it->second.get();
  }
  std::unique_ptr<ExtensionRule> rule;
  std::string file = defs_.structure_definition_file(url);
  std::string text;
  rapidjson::Document doc;
  if (!file.empty() && read_file(file, &text)) doc.ParseInsitu(text.data());
  if (!file.empty() && !doc.HasParseError() && doc.IsObject() && str_member(doc, "type") == "Extension" &&
      doc.HasMember("snapshot") && doc["snapshot"].IsObject() && doc["snapshot"].HasMember("element") &&
      doc["snapshot"]["element"].IsArray()) {
    for (const auto& e : doc["snapshot"]["element"].GetArray()) {
      if (!e.IsObject() || str_member(e, "path") != "Extension.value[x]" || e.HasMember("sliceName")) continue;
      rule = std::make_unique<ExtensionRule>();
      rule->no_value = str_member(e, "max") == "0";
      if (e.HasMember("type") && e["type"].IsArray())
        for (const auto& t : e["type"].GetArray())
          if (t.IsObject()) rule->value_types.push_back(str_member(t, "code"));
      break;
    }
  }
  std::unique_lock lock(extensions_mutex_);
  auto [it, inserted] = extensions_.emplace(std::string(url), std::move(rule));
  return it->second.get();
}

void Validator::precompile_all() const {
  for (const auto& [type, slot] : slots_) rules(type);
}

ValidatorStats Validator::stats() const {
  std::lock_guard<std::mutex> lock(build_mutex_);
  ValidatorStats s;
  s.invariants = loaded_->invariants.size();
  s.invariants_native = loaded_->native;
  s.not_compiled = loaded_->not_compiled;
  return s;
}

bool has_errors(const std::vector<Issue>& issues) {
  for (const Issue& i : issues)
    if (i.severity == Severity::Error || i.severity == Severity::Fatal) return true;
  return false;
}

// ---------------------------------------------------------------------------
// The walk.

namespace {

struct Frame {
  const Node* node;
  int index;  // position among the items of a repeating element, -1 otherwise
};

// resolve() inside a Bundle: entries by fullUrl, by "Type/id" or by a URL
// ending in "/Type/id". (The engine itself looks in %rootResource, which for
// an entry is the entry's resource, as ref-1 and dom-3 require.)
class BundleResolver : public fhirpath::ReferenceResolver {
 public:
  explicit BundleResolver(const Node* bundle) : bundle_(bundle) {}
  const Node* resolve(std::string_view reference) const override {
    if (!bundle_ || reference.empty()) return nullptr;
    const Node* found = nullptr;
    bundle_->for_each_child("entry", [&](const Node& entry) {
      if (found) return;
      const Node* resource = entry.child("resource");
      if (!resource) return;
      std::string_view full_url = entry.child_value("fullUrl");
      if (full_url == reference) {
        found = resource;
        return;
      }
      std::string type_id = std::string(resource_type(*resource)) + "/" + std::string(resource_id(*resource));
      if (resource_id(*resource).empty()) return;
      if (reference == type_id ||
          (reference.size() > type_id.size() && reference.ends_with(type_id) &&
           reference[reference.size() - type_id.size() - 1] == '/'))
        found = resource;
    });
    return found;
  }

 private:
  const Node* bundle_;
};

class Walker {
 public:
  Walker(const Validator& v, const ValidationOptions& opts, std::vector<Issue>* out)
      : v_(v), defs_(v.definitions()), tx_(v.terminology()), opts_(opts), out_(out) {}

  void run(const Node& resource) {
    bundle_ = resource_type(resource) == "Bundle" ? &resource : nullptr;
    resolver_ = BundleResolver(bundle_);
    walk(resource, nullptr, -1, nullptr);
  }

 private:
  std::string location() const {
    std::string p = opts_.location_prefix;
    for (size_t i = 0; i < stack_.size(); ++i) {
      const Node* n = stack_[i].node;
      if (i == 0) {
        if (p.empty()) p = std::string(n->name);
        continue;
      }
      p += '.';
      if (n->def && n->def->is_choice && n->type) {
        p += n->def->name;
        p += ".ofType(";
        p += n->type->name;
        p += ')';
      } else {
        p += n->name;
      }
      if (stack_[i].index >= 0) p += "[" + std::to_string(stack_[i].index) + "]";
    }
    return p;
  }

  void report(Severity severity, const char* code, std::string message, std::string id,
              std::string location_suffix = {}) {
    Issue i;
    i.severity = severity;
    i.code = code;
    i.diagnostics = std::move(message);
    i.expression = location() + location_suffix;
    i.message_id = std::move(id);
    out_->push_back(std::move(i));
  }

  // `parent`: the rules of the parent's type, which own `def` (saves a lookup per node).
  void walk(const Node& node, const ElementDef* def, int index, const TypeRules* parent) {
    if (!node.type) return;
    if (stack_.size() > 256) return;  // the parsers bound depth far below this
    stack_.push_back({&node, index});
    const Node* saved_resource = resource_;
    const Node* saved_container = container_;
    if (node.is_resource()) {
      // A contained resource keeps its container for "#id" references.
      bool contained = def && eq(def->name, "contained");
      if (!contained) container_ = &node;
      resource_ = &node;
    }
    const TypeRules& rules = v_.rules(node.type);
    const ElementRules* element_rules = nullptr;
    if (def) {
      const TypeRules& owner = parent && parent->type == def->owner ? *parent : v_.rules(def->owner);
      size_t i = static_cast<size_t>(def - def->owner->elements.data());
      if (i < owner.elements.size()) element_rules = &owner.elements[i];
    }

    if (node.is_primitive()) check_primitive_value(node, def, element_rules);
    check_children(node, rules);
    if (opts_.check_invariants) check_invariants(node, def, element_rules, rules);
    if (def && opts_.check_bindings && !def->binding_strength.empty()) check_binding(node, *def);
    if (def && eq(node.type->name, "Reference")) check_reference(node, element_rules);
    if (eq(node.type->name, "Extension")) check_extension(node);

    resource_ = saved_resource;
    container_ = saved_container;
    stack_.pop_back();
  }

  void check_primitive_value(const Node& node, const ElementDef* def, const ElementRules* element_rules) {
    if (!node.has_value) return;
    std::string_view type = node.type->name;
    if (type == "xhtml") {
      std::string normalised;
      fhir::Status st = fhir::check_xhtml_div(node.value, &normalised);
      if (!st) {
        report(Severity::Error, "value", "the narrative is not well-formed XHTML: " + st.message(), "xhtml-invalid");
        return;
      }
      if (!opts_.check_invariants) return;
      bool has_content = false;
      std::string why_not = narrative_rule_violation(normalised, &has_content);
      if (!why_not.empty())
        report(Severity::Error, "invariant", "constraint txt-1 failed: " + why_not, "txt-1");
      else if (!has_content)
        report(Severity::Error, "invariant", "constraint txt-2 failed: the narrative has no non-whitespace content",
               "txt-2");
      return;
    }
    // Resource.id is typed System.String in the R4 snapshots, but the spec
    // defines a resource's logical id as an `id` (resource.html#id).
    bool logical_id = def && eq(def->name, "id") && def->owner && def->owner->is_resource();
    std::string_view format = logical_id ? std::string_view(kIdType) : type;
    std::string why = check_primitive(format, node.value);
    if (!why.empty()) {
      report(Severity::Error, "value", "invalid " + std::string(format) + ": " + why, "format-invalid");
      return;
    }
    if (element_rules) {
      uint32_t max = element_rules->max_length;
      if (max && node.value.size() > max)
        report(Severity::Error, "value",
               "value is longer than the maximum length of " + std::to_string(max) + " characters", "max-length");
    }
  }

  void check_children(const Node& node, const TypeRules& rules) {
    // Minimum cardinality: children are in definition order, but a count is
    // simplest and the required lists are short.
    for (uint32_t i : rules.required) {
      const ElementDef& e = node.type->elements[i];
      uint32_t count = 0;
      for (const Node& c : node.children)
        if (c.def == &e) ++count;
      if (count < e.min)
        report(Severity::Error, "required",
               "element '" + (e.is_choice ? e.name + "[x]" : e.name) + "' is required (minimum " +
                   std::to_string(e.min) + ", found " + std::to_string(count) + ")",
               "card-min", "." + e.name);
    }
    // Walk children; items of one element are adjacent.
    const ElementDef* run_def = nullptr;
    int run = 0;
    for (const Node& c : node.children) {
      if (c.def != run_def) {
        run_def = c.def;
        run = 0;
      }
      int position = run++;
      if (c.def && static_cast<uint32_t>(run) == c.def->max + 1u && c.def->max != UINT32_MAX)
        report(Severity::Error, "structure",
               "element '" + c.def->name + "' may occur at most " + std::to_string(c.def->max) + " time(s)",
               "card-max", "." + c.def->name);
      walk(c, c.def, c.def && c.def->is_array() ? position : -1, &rules);
    }
  }

  void check_invariants(const Node& node, const ElementDef* def, const ElementRules* element_rules,
                        const TypeRules& rules) {
    const std::vector<const Invariant*>* lists[2] = {element_rules ? &element_rules->invariants : nullptr,
                                                     &rules.root_invariants};
    // ele-1 etc. appear both on the element and on the type's root: once each.
    uint32_t done[32];
    size_t ndone = 0;
    // dom-6 (narrative) is advice for stand-alone resources: a contained
    // resource is described by its container's narrative.
    bool contained = def && eq(def->name, "contained") && node.is_resource();
    for (const auto* list : lists) {
      if (!list) continue;
      for (const Invariant* inv : *list) {
        if (contained && inv->key == "dom-6") continue;
        bool seen = false;
        for (size_t k = 0; k < ndone; ++k)
          if (done[k] == inv->key_id) seen = true;
        if (seen) continue;
        if (ndone < 32) done[ndone++] = inv->key_id;
        evaluate(node, *inv);
      }
    }
  }

  void evaluate(const Node& node, const Invariant& inv) {
    bool ok = true;
    switch (inv.native) {
      case Native::Ele1: {
        // hasValue() or (children().count() > id.count())
        ok = node.has_value;
        for (const Node& c : node.children)
          if (!(c.def && eq(c.def->name, "id"))) ok = true;
        break;
      }
      case Native::Ext1: {
        // extension.exists() != value.exists()
        bool ext = false, value = false;
        for (const Node& c : node.children) {
          if (!c.def) continue;
          if (eq(c.def->name, "extension")) ext = true;
          if (eq(c.def->name, "value")) value = true;
        }
        ok = ext != value;
        break;
      }
      case Native::NarrativeRules:
        return;  // reported with the div's value (check_primitive_value)
      case Native::None: {
        if (!inv.compiled) {
          report(Severity::Information, "informational",
                 "invariant " + inv.key + " was not checked: " + inv.compile_error, "invariant-not-run");
          return;
        }
        if (inv.guard.holds_without_evaluation(node)) return;
        Decision decided = decide(node, inv.shortcut);
        if (decided == Decision::Holds) return;
        if (decided == Decision::Fails) {
          ok = false;
          break;
        }
        fhirpath::Environment env;
        env.resource = resource_;
        env.root_resource = container_;  // the container of a contained resource, else the resource
        env.resolver = &resolver_;
        fhirpath::Collection input{fhirpath::Value::of_node(&node)}, out;
        fhir::Status st = inv.compiled->evaluate(input, env, &out);
        if (!st) {
          report(Severity::Information, "informational",
                 "invariant " + inv.key + " could not be evaluated: " + st.message(), "invariant-not-run");
          return;
        }
        // Only an explicit false fails; an empty result means "not applicable".
        ok = !(out.size() == 1 && out[0].kind() == fhirpath::ValueKind::Boolean && !out[0].as_bool());
        break;
      }
    }
    if (!ok)
      report(inv.severity, "invariant", "constraint " + inv.key + " failed: " + inv.human,
             inv.native != Native::None ? inv.key : "inv-" + inv.key);
  }

  // The sufficient conditions of Shortcut (false: evaluate the expression).
  // Some contained resource has `member`, or `member`.`sub` (sub non-empty).
  static bool any_contained_has(const Node& node, std::string_view member, std::string_view sub = {}) {
    bool found = false;
    node.for_each_child("contained", [&](const Node& c) {
      const Node* m = c.child(member);
      if (m && (sub.empty() || m->child(sub))) found = true;
    });
    return found;
  }

  Decision decide(const Node& node, Shortcut shortcut) const {
    auto holds_if = [](bool b) { return b ? Decision::Holds : Decision::Fails; };
    switch (shortcut) {
      case Shortcut::None:
        return Decision::Unknown;
      case Shortcut::Dom2:
        return holds_if(!any_contained_has(node, "contained"));
      case Shortcut::Dom4:
        return holds_if(!any_contained_has(node, "meta", "versionId") && !any_contained_has(node, "meta", "lastUpdated"));
      case Shortcut::Dom5:
        return holds_if(!any_contained_has(node, "meta", "security"));
      case Shortcut::Dom6: {
        const Node* text = node.child("text");
        return holds_if(text && text->child("div"));
      }
      case Shortcut::Bdl5:
        return holds_if(node.child("resource") || node.child("request") || node.child("response"));
      case Shortcut::Bdl8: {
        const Node* full_url = node.child("fullUrl");
        if (!full_url) return Decision::Holds;
        if (!full_url->has_value) return Decision::Unknown;
        return holds_if(full_url->value.find("/_history/") == std::string::npos);
      }
      case Shortcut::Per1: {
        // Holds without a start or an end value; with both at the same
        // precision and time zone the text order is the time order.
        const Node* start = node.child("start");
        const Node* end = node.child("end");
        if (!start || !start->has_value || !end || !end->has_value) return Decision::Holds;
        const std::string& a = start->value;
        const std::string& b = end->value;
        bool comparable = a.size() == b.size() && (a.size() == 10 || (a.size() > 19 && a.back() == 'Z' && b.back() == 'Z') ||
                                                   (a.size() > 19 && a.compare(a.size() - 6, 6, b, b.size() - 6, 6) == 0));
        return comparable && a <= b ? Decision::Holds : Decision::Unknown;
      }
      case Shortcut::Ref1: {
        // Only "#id" references are constrained: the id of a contained
        // resource of the root resource.
        const Node* ref = node.child("reference");
        if (!ref || !ref->has_value || !ref->value.starts_with('#')) return Decision::Holds;
        if (ref->value.size() == 1 || !container_) return Decision::Unknown;
        std::string_view id = std::string_view(ref->value).substr(1);
        bool found = false;
        container_->for_each_child("contained", [&](const Node& c) {
          if (resource_id(c) == id) found = true;
        });
        return holds_if(found);
      }
      case Shortcut::Dom3: {
        // Every contained resource with an id is named by some "#id"
        // reference of the resource (the first branch of the where()).
        std::vector<std::string_view> wanted;
        bool all_have_ids = true;
        node.for_each_child("contained", [&](const Node& c) {
          std::string_view id = resource_id(c);
          if (id.empty()) all_have_ids = false;
          else wanted.push_back(id);
        });
        if (!all_have_ids || !resource_) return Decision::Unknown;
        remove_referenced(*resource_, &wanted, 0);
        return wanted.empty() ? Decision::Holds : Decision::Unknown;
      }
      case Shortcut::Bdl3:
      case Shortcut::Bdl4: {
        // Every entry has a request (a response) exactly when the Bundle's type calls for one.
        if (&node != resource_) return Decision::Unknown;
        const Node* type = node.child("type");
        if (!type || !type->has_value) return Decision::Unknown;
        const std::string& t = type->value;
        bool expected = shortcut == Shortcut::Bdl3 ? t == "batch" || t == "transaction" || t == "history"
                                                   : t == "batch-response" || t == "transaction-response" || t == "history";
        const char* member = shortcut == Shortcut::Bdl3 ? "request" : "response";
        bool all = true;
        node.for_each_child("entry", [&](const Node& entry) {
          if ((entry.child(member) != nullptr) != expected) all = false;
        });
        return all ? Decision::Holds : Decision::Unknown;
      }
      case Shortcut::Bdl7: {
        // A history, or fullUrl + versionId distinct across the entries with a fullUrl.
        if (node.child_value("type") == "history") return Decision::Holds;
        std::unordered_set<std::string> seen;
        bool distinct = true;
        node.for_each_child("entry", [&](const Node& entry) {
          const Node* full_url = entry.child("fullUrl");
          if (!distinct || !full_url) return;
          if (!full_url->has_value) {
            distinct = false;  // a fullUrl with only extensions: left to the expression
            return;
          }
          std::string key = full_url->value;  // fullUrl & versionId: plain concatenation, as the expression
          if (const Node* r = entry.child("resource"))
            if (const Node* meta = r->child("meta")) key += meta->child_value("versionId");
          if (!seen.insert(std::move(key)).second) distinct = false;
        });
        return distinct ? Decision::Holds : Decision::Unknown;
      }
    }
    return Decision::Unknown;
  }

  // Drops from `ids` those a "reference": "#id" under `n` names.
  static void remove_referenced(const Node& n, std::vector<std::string_view>* ids, int depth) {
    if (ids->empty() || depth > 64) return;
    for (const Node& c : n.children) {
      if (c.has_value && c.value.size() > 1 && c.value[0] == '#' && c.def && eq(c.def->name, "reference")) {
        std::string_view id = std::string_view(c.value).substr(1);
        ids->erase(std::remove(ids->begin(), ids->end(), id), ids->end());
      }
      remove_referenced(c, ids, depth + 1);
    }
  }

  // ----- extensions defined in the package: value type (context: later)

  void check_extension(const Node& node) {
    std::string_view url = node.child_value("url");
    if (url.empty()) return;
    const Validator::ExtensionRule* rule = v_.extension_rule(url);
    if (!rule) return;  // not defined in the package: profiles decide (later slice)
    const Node* value = nullptr;
    for (const Node& c : node.children)
      if (c.def && eq(c.def->name, "value")) value = &c;
    if (!value || !value->type) return;
    if (rule->no_value) {
      report(Severity::Error, "structure",
             "extension " + std::string(url) + " is complex: it takes nested extensions, not a value",
             "ext-no-value", ".value.ofType(" + value->type->name + ")");
      return;
    }
    if (rule->value_types.empty() ||
        std::find(rule->value_types.begin(), rule->value_types.end(), value->type->name) != rule->value_types.end())
      return;
    std::string allowed;
    for (const std::string& t : rule->value_types) allowed += (allowed.empty() ? "" : ", ") + t;
    report(Severity::Error, "structure",
           "extension " + std::string(url) + " takes a value of type " + allowed + ", not " + value->type->name,
           "ext-value-type", ".value.ofType(" + value->type->name + ")");
  }

  // ----- bindings

  struct Coded {
    std::string_view system, code;
  };

  void check_binding(const Node& node, const ElementDef& def) {
    std::string_view strength = def.binding_strength;
    bool required = strength == "required";
    if (!required && strength != "extensible") return;
    std::string_view type = node.type->name;
    std::vector<Coded> codes;
    if (type == "code" || type == "string" || type == "uri") {
      if (!node.has_value) return;
      // CapabilityStatement.format: "xml", "json" and "ttl" are allowed
      // besides MIME types (capabilitystatement-definitions.html#CapabilityStatement.format).
      if (def.path == "CapabilityStatement.format" &&
          (node.value == "xml" || node.value == "json" || node.value == "ttl"))
        return;
      codes.push_back({{}, node.value});
    } else if (type == "Coding") {
      std::string_view code = node.child_value("code");
      if (code.empty()) return;
      codes.push_back({node.child_value("system"), code});
    } else if (type == "CodeableConcept") {
      node.for_each_child("coding", [&](const Node& coding) {
        std::string_view code = coding.child_value("code");
        if (!code.empty()) codes.push_back({coding.child_value("system"), code});
      });
      if (codes.empty()) return;  // text only: nothing to check against the value set
    } else {
      return;  // Quantity units etc.: not this slice
    }
    const std::string& vs = def.binding_value_set;
    if (!tx_) {
      report(Severity::Information, "informational", "binding to " + vs + " not checked: no terminology store",
             "binding-not-checked");
      return;
    }
    bool any_valid = false, any_unchecked = false;
    std::string message;
    for (const Coded& c : codes) {
      terminology::CodeResult r = tx_->validate_code(vs, c.system, c.code);
      if (r.validity == terminology::Validity::Valid) {
        any_valid = true;
        break;
      }
      if (r.validity == terminology::Validity::NotChecked) any_unchecked = true;
      if (message.empty()) message = r.message;
    }
    if (any_valid) return;
    if (any_unchecked) {
      report(Severity::Information, "informational", "code not checked: " + message, "binding-not-checked");
      return;
    }
    if (required)
      report(Severity::Error, "code-invalid", message + " (required binding)", "binding-required");
    else
      report(Severity::Warning, "code-invalid", message + " (extensible binding)", "binding-extensible");
  }

  // ----- references

  const Node* find_contained(std::string_view id) const {
    if (!container_) return nullptr;
    const Node* found = nullptr;
    container_->for_each_child("contained", [&](const Node& c) {
      if (!found && resource_id(c) == id) found = &c;
    });
    return found;
  }

  const Node* find_in_bundle(std::string_view full_url) {
    if (!bundle_) return nullptr;
    // Indexed on first use: a transaction's entries reference one another.
    if (!full_urls_indexed_) {
      full_urls_indexed_ = true;
      bundle_->for_each_child("entry", [&](const Node& entry) {
        std::string_view url = entry.child_value("fullUrl");
        const Node* resource = entry.child("resource");
        if (!url.empty() && resource) by_full_url_.emplace(url, resource);  // the first entry wins
      });
    }
    auto it = by_full_url_.find(full_url);
    return it == by_full_url_.end() ? nullptr : it->second;
  }

  // The resource type a RESTful reference names: "Patient/1", ".../Patient/1",
  // ".../Patient/1/_history/2", "Patient?identifier=..." (conditional).
  std::string_view type_in_reference(std::string_view ref) const {
    size_t q = ref.find('?');
    if (q != std::string_view::npos) {
      std::string_view head = ref.substr(0, q);
      size_t slash = head.rfind('/');
      return slash == std::string_view::npos ? head : head.substr(slash + 1);
    }
    std::vector<std::string_view> parts;
    size_t start = 0;
    while (start <= ref.size()) {
      size_t slash = ref.find('/', start);
      if (slash == std::string_view::npos) slash = ref.size();
      parts.push_back(ref.substr(start, slash - start));
      start = slash + 1;
    }
    size_t n = parts.size();
    if (n >= 4 && parts[n - 2] == "_history") return parts[n - 4];
    if (n >= 2) return parts[n - 2];
    return {};
  }

  void check_reference(const Node& node, const ElementRules* er) {
    std::string_view ref = node.child_value("reference");
    if (ref.empty()) return;

    std::string_view target_type;
    if (ref.front() == '#') {
      if (ref.size() == 1) return;  // the container itself
      const Node* target = find_contained(ref.substr(1));
      if (!target) {
        report(Severity::Error, "not-found", "reference " + std::string(ref) + " names no contained resource",
               "ref-contained-missing", ".reference");
        return;
      }
      target_type = resource_type(*target);
    } else if (ref.starts_with("urn:uuid:") || ref.starts_with("urn:oid:")) {
      const Node* target = find_in_bundle(ref);
      if (!target) return;  // resolved elsewhere (e.g. by the transaction) or external
      target_type = resource_type(*target);
    } else {
      target_type = type_in_reference(ref);
      if (!defs_.resource_type(target_type)) {
        if (const Node* target = find_in_bundle(ref)) target_type = resource_type(*target);
        else return;  // not a RESTful reference: nothing to say about its type
      }
    }
    if (!er || er->any_target || target_type.empty()) return;
    if (std::find(er->targets.begin(), er->targets.end(), target_type) != er->targets.end()) return;
    std::string allowed;
    for (const std::string& t : er->targets) allowed += (allowed.empty() ? "" : ", ") + t;
    report(Severity::Error, "structure",
           "reference to a " + std::string(target_type) + " where only " + allowed + " is allowed", "ref-wrong-type",
           ".reference");
  }

  const Validator& v_;
  const fhir::Definitions& defs_;
  const terminology::Store* tx_;
  const ValidationOptions& opts_;
  std::vector<Issue>* out_;
  std::vector<Frame> stack_;
  const Node* bundle_ = nullptr;
  bool full_urls_indexed_ = false;
  std::unordered_map<std::string_view, const Node*> by_full_url_;
  BundleResolver resolver_{nullptr};
  const Node* resource_ = nullptr;
  const Node* container_ = nullptr;
};

}  // namespace

std::vector<Issue> Validator::validate(const Node& resource, const ValidationOptions& options) const {
  std::vector<Issue> issues;
  if (!resource.type || !resource.is_resource()) {
    Issue i;
    i.code = "structure";
    i.diagnostics = "not a resource";
    i.message_id = "not-a-resource";
    issues.push_back(std::move(i));
    return issues;
  }
  Walker walker(*this, options, &issues);
  walker.run(resource);
  apply_profiles(resource, options, &issues);
  return issues;
}

}  // namespace espace::profiles
