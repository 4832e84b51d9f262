// Builds the R4 type system from the StructureDefinition snapshots of the
// official package. Each snapshot lists elements depth-first, so an element's
// owner is the type (or backbone) named by its parent path.
#include "espace/fhir/definitions.h"
#include "espace/fhir/read_file.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>

namespace espace::fhir {

namespace {

constexpr std::string_view kFhirTypeExtension =
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";
constexpr std::string_view kRegexExtension = "http://hl7.org/fhir/StructureDefinition/regex";
constexpr std::string_view kSystemPrefix = "http://hl7.org/fhirpath/System.";


using JsonValue = rapidjson::Value;

std::string_view str_member(const JsonValue& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !it->value.IsString()) return {};
  return {it->value.GetString(), it->value.GetStringLength()};
}

bool bool_member(const JsonValue& obj, const char* name) {
  auto it = obj.FindMember(name);
  return it != obj.MemberEnd() && it->value.IsBool() && it->value.GetBool();
}

// The value of the first extension with this URL carrying a string-like value.
std::string_view extension_value(const JsonValue& obj, std::string_view url) {
  auto it = obj.FindMember("extension");
  if (it == obj.MemberEnd() || !it->value.IsArray()) return {};
  for (const JsonValue& ext : it->value.GetArray()) {
    if (!ext.IsObject() || str_member(ext, "url") != url) continue;
    for (auto m = ext.MemberBegin(); m != ext.MemberEnd(); ++m) {
      std::string_view key(m->name.GetString(), m->name.GetStringLength());
      if (key.starts_with("value") && m->value.IsString())
        return {m->value.GetString(), m->value.GetStringLength()};
    }
  }
  return {};
}

// Maps a FHIRPath system type (used on id/url/value elements without the
// fhir-type extension) to the FHIR primitive it stands for.
std::string system_to_fhir(std::string_view system) {
  if (system == "Boolean") return "boolean";
  if (system == "Integer") return "integer";
  if (system == "Decimal") return "decimal";
  if (system == "Date") return "date";
  if (system == "DateTime") return "dateTime";
  if (system == "Time") return "time";
  return "string";
}

struct RawElement {
  std::string path;
  std::vector<std::string> type_codes;
  std::string content_reference;  // without the leading '#'
  uint32_t min = 0;
  uint32_t max = 1;
  bool is_summary = false;
  bool is_modifier = false;
  bool xml_attribute = false;
  std::string binding_strength;
  std::string binding_value_set;
  std::string regex;
};

struct RawType {
  TypeDef* type = nullptr;
  std::string base_url;
  std::vector<RawElement> elements;
};

RawElement read_element(const JsonValue& e) {
  RawElement r;
  r.path = std::string(str_member(e, "path"));
  auto min = e.FindMember("min");
  if (min != e.MemberEnd() && min->value.IsUint()) r.min = min->value.GetUint();
  std::string_view max = str_member(e, "max");
  if (max == "*")
    r.max = std::numeric_limits<uint32_t>::max();
  else if (!max.empty())
    r.max = static_cast<uint32_t>(std::strtoul(std::string(max).c_str(), nullptr, 10));
  r.is_summary = bool_member(e, "isSummary");
  r.is_modifier = bool_member(e, "isModifier");
  auto rep = e.FindMember("representation");
  if (rep != e.MemberEnd() && rep->value.IsArray())
    for (const JsonValue& v : rep->value.GetArray())
      if (v.IsString() && std::string_view(v.GetString()) == "xmlAttr") r.xml_attribute = true;
  std::string_view ref = str_member(e, "contentReference");
  if (!ref.empty()) r.content_reference = std::string(ref.substr(ref.front() == '#' ? 1 : 0));
  auto types = e.FindMember("type");
  if (types != e.MemberEnd() && types->value.IsArray()) {
    for (const JsonValue& t : types->value.GetArray()) {
      if (!t.IsObject()) continue;
      std::string_view code = str_member(t, "code");
      if (code.starts_with(kSystemPrefix)) {
        std::string_view fhir_type = extension_value(t, kFhirTypeExtension);
        r.type_codes.push_back(fhir_type.empty() ? system_to_fhir(code.substr(kSystemPrefix.size()))
                                                 : std::string(fhir_type));
      } else {
        r.type_codes.emplace_back(code);
      }
      std::string_view regex = extension_value(t, kRegexExtension);
      if (!regex.empty() && r.regex.empty()) r.regex = std::string(regex);
    }
  }
  auto binding = e.FindMember("binding");
  if (binding != e.MemberEnd() && binding->value.IsObject()) {
    r.binding_strength = std::string(str_member(binding->value, "strength"));
    std::string_view vs = str_member(binding->value, "valueSet");
    r.binding_value_set = std::string(vs.substr(0, vs.find('|')));
  }
  return r;
}

std::string capitalized(std::string_view s) {
  std::string out(s);
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out;
}

JsonValueKind json_kind_of(std::string_view primitive) {
  if (primitive == "boolean") return JsonValueKind::Boolean;
  if (primitive == "integer" || primitive == "positiveInt" || primitive == "unsignedInt" ||
      primitive == "decimal")
    return JsonValueKind::Number;
  return JsonValueKind::String;
}

Status load_error(const std::string& what) {
  Issue i;
  i.severity = Severity::Fatal;
  i.code = "exception";
  i.diagnostics = what;
  i.message_id = "definitions-load";
  return Status::error(ErrorCategory::Internal, std::move(i));
}

}  // namespace

class DefinitionsLoader {
 public:
  explicit DefinitionsLoader(Definitions* defs) : defs_(defs) {}

  Status run(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) return load_error("cannot read FHIR package directory " + dir + ": " + ec.message());
    std::vector<std::string> sd_files, sp_files;
    for (const auto& entry : it) {
      std::string name = entry.path().filename().string();
      if (!name.ends_with(".json")) continue;
      if (name.starts_with("StructureDefinition-"))
        sd_files.push_back(entry.path().string());
      else if (name.starts_with("SearchParameter-"))
        sp_files.push_back(entry.path().string());
    }
    if (sd_files.empty()) return load_error("no StructureDefinition files in " + dir);
    // Directory order is arbitrary; sort for reproducible search_parameters_json().
    std::sort(sd_files.begin(), sd_files.end());
    std::sort(sp_files.begin(), sp_files.end());

    std::string text;
    for (const std::string& file : sd_files) {
      if (!read_file(file, &text)) return load_error("cannot read " + file);
      if (Status s = read_structure_definition(file, &text); !s) return s;
    }
    if (Status s = link(); !s) return s;

    defs_->search_parameters_.reserve(sp_files.size());
    for (const std::string& file : sp_files) {
      if (!read_file(file, &text)) return load_error("cannot read " + file);
      defs_->search_parameters_.push_back(std::move(text));
      text.clear();
    }
    return Status::ok();
  }

 private:
  Status read_structure_definition(const std::string& file, std::string* text) {
    rapidjson::Document doc;
    doc.ParseInsitu(text->data());
    if (doc.HasParseError() || !doc.IsObject()) return load_error("malformed JSON in " + file);
    std::string_view url = str_member(doc, "url");
    std::string_view kind = str_member(doc, "kind");
    std::string_view derivation = str_member(doc, "derivation");
    std::string_view type_name = str_member(doc, "type");
    bool defines_type = (kind == "primitive-type" || kind == "complex-type" || kind == "resource") &&
                        (derivation == "specialization" ||
                         (derivation.empty() && (type_name == "Element" || type_name == "Resource")));
    if (!url.empty()) defs_->sd_files_.emplace(std::string(url), std::make_pair(file, !defines_type));
    if (!defines_type) return Status::ok();

    auto type = std::make_unique<TypeDef>();
    type->name = std::string(type_name);
    type->url = std::string(url);
    type->kind = kind == "primitive-type" ? TypeKind::Primitive
                 : kind == "resource"     ? TypeKind::Resource
                                          : TypeKind::Complex;
    type->is_abstract = bool_member(doc, "abstract");
    if (type->kind == TypeKind::Primitive) type->json_value = json_kind_of(type->name);

    RawType raw;
    raw.type = type.get();
    raw.base_url = std::string(str_member(doc, "baseDefinition"));
    auto snapshot = doc.FindMember("snapshot");
    if (snapshot == doc.MemberEnd() || !snapshot->value.IsObject())
      return load_error("no snapshot in " + file);
    auto elements = snapshot->value.FindMember("element");
    if (elements == snapshot->value.MemberEnd() || !elements->value.IsArray())
      return load_error("no snapshot elements in " + file);
    for (const JsonValue& e : elements->value.GetArray()) {
      // Specializations carry no slices; skip any defensively.
      if (!e.IsObject() || e.HasMember("sliceName")) continue;
      raw.elements.push_back(read_element(e));
    }
    if (!defs_->types_.emplace(type->name, std::move(type)).second)
      return load_error("type defined twice: " + std::string(type_name));
    raw_types_.push_back(std::move(raw));
    return Status::ok();
  }

  TypeDef* find_type(std::string_view name) {
    auto it = defs_->types_.find(name);
    return it == defs_->types_.end() ? nullptr : it->second.get();
  }

  Status link() {
    std::unordered_map<std::string_view, TypeDef*> by_url;
    for (RawType& raw : raw_types_) by_url.emplace(raw.type->url, raw.type);
    for (RawType& raw : raw_types_) {
      if (raw.base_url.empty()) continue;
      auto it = by_url.find(raw.base_url);
      if (it == by_url.end()) return load_error(raw.type->name + ": unknown base " + raw.base_url);
      raw.type->base = it->second;
    }

    struct PendingReference {
      TypeDef* owner;
      size_t index;
      std::string target;
    };
    std::vector<PendingReference> references;

    for (RawType& raw : raw_types_) {
      TypeDef* type = raw.type;
      const std::string value_path = type->name + ".value";
      // Paths that have child elements: these elements are backbones.
      std::unordered_map<std::string_view, TypeDef*> owners;
      std::vector<bool> has_children(raw.elements.size(), false);
      {
        std::unordered_map<std::string_view, size_t> index_of;
        for (size_t i = 0; i < raw.elements.size(); ++i) index_of.emplace(raw.elements[i].path, i);
        for (const RawElement& e : raw.elements) {
          size_t dot = e.path.rfind('.');
          if (dot == std::string::npos) continue;
          auto parent = index_of.find(std::string_view(e.path).substr(0, dot));
          if (parent != index_of.end()) has_children[parent->second] = true;
        }
      }
      for (size_t i = 0; i < raw.elements.size(); ++i) {
        RawElement& e = raw.elements[i];
        size_t dot = e.path.rfind('.');
        if (dot == std::string::npos) {
          if (e.path != type->name) return load_error(type->name + ": unexpected root " + e.path);
          owners.emplace(e.path, type);
          continue;
        }
        if (type->kind == TypeKind::Primitive && e.path == value_path) {
          // The primitive's value is Node::value, not a child element.
          type->regex = e.regex;
          continue;
        }
        auto owner_it = owners.find(std::string_view(e.path).substr(0, dot));
        if (owner_it == owners.end()) return load_error("element without owner: " + e.path);
        TypeDef* owner = owner_it->second;

        ElementDef def;
        def.path = e.path;
        std::string_view last = std::string_view(e.path).substr(dot + 1);
        def.is_choice = last.ends_with("[x]");
        def.name = std::string(def.is_choice ? last.substr(0, last.size() - 3) : last);
        def.min = e.min;
        def.max = e.max;
        def.is_summary = e.is_summary;
        def.is_modifier = e.is_modifier;
        def.owner = owner;
        def.order = static_cast<int>(owner->elements.size());
        def.binding_strength = std::move(e.binding_strength);
        def.binding_value_set = std::move(e.binding_value_set);
        def.xml_attribute = e.xml_attribute;

        if (has_children[i]) {
          auto backbone = std::make_unique<TypeDef>();
          backbone->name = e.path;
          backbone->kind = TypeKind::Backbone;
          backbone->base = e.type_codes.empty() ? find_type("BackboneElement") : find_type(e.type_codes[0]);
          TypeDef* bb = backbone.get();
          if (!defs_->types_.emplace(bb->name, std::move(backbone)).second)
            return load_error("backbone defined twice: " + e.path);
          owners.emplace(bb->name, bb);
          def.types.push_back(bb);
        } else if (!e.content_reference.empty()) {
          references.push_back({owner, owner->elements.size(), e.content_reference});
        } else {
          if (e.type_codes.empty()) return load_error("element without type: " + e.path);
          for (const std::string& code : e.type_codes) {
            const TypeDef* t = find_type(code);
            if (!t) return load_error(e.path + ": unknown type " + code);
            def.types.push_back(t);
            if (def.is_choice) def.choice_names.push_back(def.name + capitalized(code));
          }
          if (!def.is_choice && def.types.size() != 1)
            return load_error(e.path + ": several types on a non-choice element");
        }
        owner->elements.push_back(std::move(def));
      }
    }

    for (const PendingReference& ref : references) {
      const TypeDef* target = find_type(ref.target);
      if (!target || target->kind != TypeKind::Backbone)
        return load_error(ref.owner->name + ": unresolved contentReference #" + ref.target);
      ref.owner->elements[ref.index].types.push_back(target);
    }

    for (auto& [name, type] : defs_->types_) {
      for (uint32_t i = 0; i < type->elements.size(); ++i) {
        const ElementDef& e = type->elements[i];
        if (e.is_choice) {
          for (size_t k = 0; k < e.types.size(); ++k)
            type->json_index.emplace(e.choice_names[k], std::make_pair(i, e.types[k]));
        } else {
          type->json_index.emplace(e.name, std::make_pair(i, e.types.empty() ? nullptr : e.types[0]));
        }
      }
    }
    return Status::ok();
  }

  Definitions* defs_;
  std::vector<RawType> raw_types_;
};

const ElementDef* TypeDef::find_json(std::string_view json_name, const TypeDef** chosen) const {
  auto it = json_index.find(json_name);
  if (it == json_index.end()) return nullptr;
  if (chosen) *chosen = it->second.second;
  return &elements[it->second.first];
}

const ElementDef* TypeDef::find(std::string_view name) const {
  // A non-choice element's name is its JSON name, so the hash index answers
  // most lookups; choice elements ("value" for value[x]) are few.
  auto it = json_index.find(name);
  if (it != json_index.end() && !elements[it->second.first].is_choice) return &elements[it->second.first];
  for (const ElementDef& e : elements)
    if (e.is_choice && e.name == name) return &e;
  return nullptr;
}

bool TypeDef::is_a(const TypeDef* other) const {
  for (const TypeDef* t = this; t; t = t->base)
    if (t == other) return true;
  return false;
}

Status Definitions::load(const std::string& package_dir, std::unique_ptr<Definitions>* out) {
  auto defs = std::unique_ptr<Definitions>(new Definitions());
  defs->package_dir_ = package_dir;
  DefinitionsLoader loader(defs.get());
  if (Status s = loader.run(package_dir); !s) return s;
  *out = std::move(defs);
  return Status::ok();
}

std::string Definitions::default_package_dir() {
  if (const char* env = std::getenv("ESPACE_FHIR_PACKAGE"); env && *env) return env;
  std::string cache;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    cache = xdg;
  else if (const char* home = std::getenv("HOME"); home && *home)
    cache = std::string(home) + "/.cache";
  else
    cache = ".cache";
  return cache + "/espace/hl7.fhir.r4.examples-4.0.1/package";
}

const TypeDef* Definitions::type(std::string_view name) const {
  auto it = types_.find(name);
  return it == types_.end() ? nullptr : it->second.get();
}

const TypeDef* Definitions::resource_type(std::string_view name) const {
  const TypeDef* t = type(name);
  return t && t->kind == TypeKind::Resource && !t->is_abstract ? t : nullptr;
}

std::vector<std::string> Definitions::resource_type_names() const {
  std::vector<std::string> names;
  for (const auto& [name, type] : types_)
    if (type->kind == TypeKind::Resource && !type->is_abstract) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

std::string Definitions::structure_definition_file(std::string_view url) const {
  auto it = sd_files_.find(url.substr(0, url.find('|')));
  return it == sd_files_.end() ? std::string() : it->second.first;
}

std::vector<std::string> Definitions::profile_urls() const {
  std::vector<std::string> urls;
  for (const auto& [url, file] : sd_files_)
    if (file.second) urls.push_back(url);
  std::sort(urls.begin(), urls.end());
  return urls;
}

bool read_file(const std::string& path, std::string* out) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  std::fseek(f, 0, SEEK_END);
  long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (size < 0) {
    std::fclose(f);
    return false;
  }
  out->resize(static_cast<size_t>(size));
  size_t got = size ? std::fread(out->data(), 1, out->size(), f) : 0;
  std::fclose(f);
  return got == out->size();
}

}  // namespace espace::fhir
