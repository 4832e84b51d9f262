// Loading, expansion and code validation for the terminology store.
#include <rapidjson/document.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>

#include "espace/fhir/data_files.h"
#include "espace/fhir/read_file.h"
#include "espace/terminology/terminology.h"

namespace espace::terminology {

using fhir::read_file;

namespace {

using JsonValue = rapidjson::Value;

constexpr int kMaxImportDepth = 16;     // ValueSet.compose.include.valueSet nesting
constexpr size_t kMaxJsonBytes = 64u << 20;


std::string str_member(const JsonValue& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !it->value.IsString()) return {};
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

const JsonValue* array_member(const JsonValue& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !it->value.IsArray()) return nullptr;
  return &it->value;
}

std::string_view without_version(std::string_view url) { return url.substr(0, url.find('|')); }

fhir::Status error(fhir::ErrorCategory category, std::string code, std::string message, std::string id) {
  fhir::Issue i;
  i.code = std::move(code);
  i.diagnostics = std::move(message);
  i.message_id = std::move(id);
  return fhir::Status::error(category, std::move(i));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Nested concepts: depth-first, parents recorded from the nesting.
void read_concepts(const JsonValue& list, int64_t parent, CodeSystem* cs, int depth) {
  if (depth > 64) return;
  for (const JsonValue& c : list.GetArray()) {
    if (!c.IsObject()) continue;
    std::string code = str_member(c, "code");
    if (code.empty()) continue;
    uint32_t index;
    auto found = cs->index.find(code);
    if (found == cs->index.end()) {
      index = static_cast<uint32_t>(cs->concepts.size());
      Concept entry;
      entry.code = code;
      entry.display = str_member(c, "display");
      cs->concepts.push_back(std::move(entry));
      cs->index.emplace(std::move(code), index);
    } else {
      index = found->second;
    }
    if (parent >= 0) cs->concepts[index].parents.push_back(static_cast<uint32_t>(parent));
    if (const JsonValue* nested = array_member(c, "concept")) read_concepts(*nested, index, cs, depth + 1);
  }
}

// Parent links given as properties ("parent", "subsumedBy") rather than nesting.
void read_parent_properties(const JsonValue& list, CodeSystem* cs, int depth) {
  if (depth > 64) return;
  for (const JsonValue& c : list.GetArray()) {
    if (!c.IsObject()) continue;
    auto self = cs->index.find(str_member(c, "code"));
    if (self == cs->index.end()) continue;
    if (const JsonValue* props = array_member(c, "property")) {
      for (const JsonValue& p : props->GetArray()) {
        if (!p.IsObject()) continue;
        std::string name = str_member(p, "code");
        if (name != "parent" && name != "subsumedBy") continue;
        auto target = cs->index.find(str_member(p, "valueCode"));
        if (target != cs->index.end() && target->second != self->second) {
          auto& parents = cs->concepts[self->second].parents;
          if (std::find(parents.begin(), parents.end(), target->second) == parents.end())
            parents.push_back(target->second);
        }
      }
    }
    if (const JsonValue* nested = array_member(c, "concept")) read_parent_properties(*nested, cs, depth + 1);
  }
}

ConceptSet read_concept_set(const JsonValue& inc) {
  ConceptSet set;
  set.system = str_member(inc, "system");
  if (const JsonValue* vs = array_member(inc, "valueSet"))
    for (const JsonValue& v : vs->GetArray())
      if (v.IsString()) set.value_sets.emplace_back(without_version(v.GetString()));
  if (const JsonValue* concepts = array_member(inc, "concept"))
    for (const JsonValue& c : concepts->GetArray())
      if (c.IsObject()) set.concepts.emplace_back(str_member(c, "code"), str_member(c, "display"));
  if (const JsonValue* filters = array_member(inc, "filter"))
    for (const JsonValue& f : filters->GetArray())
      if (f.IsObject()) set.filters.push_back({str_member(f, "property"), str_member(f, "op"), str_member(f, "value")});
  return set;
}

// Concept indexes of `cs` in the subtree of `root` (root included).
void collect_descendants(const CodeSystem& cs, uint32_t root, std::vector<bool>* seen) {
  std::vector<uint32_t> stack{root};
  while (!stack.empty()) {
    uint32_t i = stack.back();
    stack.pop_back();
    if ((*seen)[i]) continue;
    (*seen)[i] = true;
    for (uint32_t child : cs.concepts[i].children) stack.push_back(child);
  }
}

std::string key_of(std::string_view system, std::string_view code) {
  std::string k;
  k.reserve(system.size() + code.size() + 1);
  k.append(system).push_back('|');
  k.append(code);
  return k;
}

// The working set of an expansion in progress, in insertion order.
struct CodeSet {
  std::vector<ExpandedCode> codes;
  std::unordered_set<std::string> keys;
  void add(std::string_view system, std::string_view code, std::string_view display) {
    if (keys.insert(key_of(system, code)).second)
      codes.push_back({std::string(system), std::string(code), std::string(display)});
  }
};

}  // namespace

std::string external_code_syntax(std::string_view system, std::string_view code) {
  auto all = [&](auto pred, size_t from = 0, size_t to = std::string_view::npos) {
    std::string_view s = code.substr(from, to == std::string_view::npos ? std::string_view::npos : to - from);
    return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) { return pred(static_cast<unsigned char>(c)); });
  };
  if (system == "urn:ietf:bcp:13") {
    // type "/" subtype [";" parameters] (RFC 6838 restricted names).
    size_t slash = code.find('/');
    size_t semi = code.find(';');
    auto token = [](unsigned char c) { return std::isalnum(c) || std::strchr("!#$&-^_.+", c) != nullptr; };
    if (slash == std::string_view::npos || (semi != std::string_view::npos && semi < slash) ||
        !all(token, 0, slash) || !all(token, slash + 1, semi))
      return "MIME type (type/subtype, urn:ietf:bcp:13)";
    return "";
  }
  if (system == "urn:ietf:bcp:47") {
    // Subtags of 1-8 letters/digits separated by '-', the first letters only.
    size_t start = 0;
    bool first = true;
    while (true) {
      size_t dash = code.find('-', start);
      std::string_view tag = code.substr(start, dash == std::string_view::npos ? std::string_view::npos : dash - start);
      bool ok = !tag.empty() && tag.size() <= 8 &&
                std::all_of(tag.begin(), tag.end(), [&](char c) {
                  return first ? std::isalpha(static_cast<unsigned char>(c)) : std::isalnum(static_cast<unsigned char>(c));
                });
      if (!ok) return "language tag (urn:ietf:bcp:47)";
      if (dash == std::string_view::npos) return "";
      start = dash + 1;
      first = false;
    }
  }
  if (system == "http://loinc.org") {
    // Codes and parts: optional LP/LA/LG/LL prefix, digits, '-', check digit.
    std::string_view c = code;
    for (std::string_view prefix : {"LP", "LA", "LG", "LL"})
      if (c.starts_with(prefix)) c.remove_prefix(2);
    size_t dash = c.find('-');
    if (dash == std::string_view::npos || dash == 0 || dash + 2 != c.size() ||
        !std::all_of(c.begin(), c.begin() + static_cast<long>(dash), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
        c.back() < '0' || c.back() > '9')
      return "LOINC code (digits, '-', check digit)";
    return "";
  }
  if (system == "http://snomed.info/sct") {
    // SCTID: 6 to 18 digits, no leading zero, Verhoeff check digit last.
    if (code.size() < 6 || code.size() > 18 || code[0] == '0' ||
        !std::all_of(code.begin(), code.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
      return "SNOMED CT identifier (6-18 digits)";
    static const int d[10][10] = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5},
                                  {2, 3, 4, 0, 1, 7, 8, 9, 5, 6}, {3, 4, 0, 1, 2, 8, 9, 5, 6, 7},
                                  {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
                                  {6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3},
                                  {8, 7, 6, 5, 9, 3, 2, 1, 0, 4}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}};
    static const int p[8][10] = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4},
                                 {5, 8, 0, 3, 7, 9, 6, 1, 4, 2}, {8, 9, 1, 6, 0, 4, 3, 5, 2, 7},
                                 {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
                                 {2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8}};
    int check = 0;
    for (size_t i = 0; i < code.size(); ++i) check = d[check][p[i % 8][code[code.size() - 1 - i] - '0']];
    if (check != 0) return "SNOMED CT identifier (Verhoeff check digit)";
    return "";
  }
  return "";
}

const char* validity_name(Validity v) {
  switch (v) {
    case Validity::Valid: return "valid";
    case Validity::Invalid: return "invalid";
    case Validity::NotChecked: return "not-checked";
  }
  return "not-checked";
}

int64_t CodeSystem::find(std::string_view code) const {
  auto it = index.find(code);
  if (it != index.end()) return it->second;
  if (!case_sensitive) {
    std::string wanted = lower(code);
    for (size_t i = 0; i < concepts.size(); ++i)
      if (lower(concepts[i].code) == wanted) return static_cast<int64_t>(i);
  }
  return -1;
}

int64_t Expansion::find(std::string_view system, std::string_view code) const {
  // The key is built on the stack: this runs for every coded element validated.
  char buffer[512];
  size_t n = system.size() + 1 + code.size();
  if (n > sizeof buffer) {
    auto it = keys.find(key_of(system, code));
    return it == keys.end() ? int64_t{-1} : int64_t{it->second};
  }
  std::copy(system.begin(), system.end(), buffer);
  buffer[system.size()] = '|';
  std::copy(code.begin(), code.end(), buffer + system.size() + 1);
  auto it = keys.find(std::string_view(buffer, n));
  return it == keys.end() ? int64_t{-1} : int64_t{it->second};
}

bool Expansion::contains(std::string_view system, std::string_view code) const { return find(system, code) >= 0; }

bool Expansion::is_unchecked(std::string_view system) const {
  if (system.empty()) return !unchecked_systems.empty();
  // "" stands for an imported value set the store lacks: it may hold any system.
  for (const std::string& s : unchecked_systems)
    if (s.empty() || s == system) return true;
  return false;
}

fhir::Status Store::load(const std::string& package_dir, std::unique_ptr<Store>* out, LoadStats* stats) {
  namespace fs = std::filesystem;
  auto start = std::chrono::steady_clock::now();
  auto store = std::make_unique<Store>();
  std::error_code ec;
  fs::directory_iterator it(package_dir, ec);
  if (ec)
    return error(fhir::ErrorCategory::Internal, "exception",
                 "cannot read FHIR package directory " + package_dir + ": " + ec.message(), "terminology-load");
  std::vector<std::string> files;
  for (const auto& entry : it) {
    std::string name = entry.path().filename().string();
    if (name.ends_with(".json") && (name.starts_with("CodeSystem-") || name.starts_with("ValueSet-")))
      files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());  // reproducible when two files share a URL
  // Our French sets (terminology/data) come after the package: they may
  // complete a system the package only names.
  std::vector<std::string> ours;
  for (const auto& entry : fs::directory_iterator(fhir::data_path("terminology/data"), ec))
    if (entry.path().extension() == ".json") ours.push_back(entry.path().string());
  std::sort(ours.begin(), ours.end());
  files.insert(files.end(), ours.begin(), ours.end());
  std::string text;
  for (const std::string& file : files) {
    if (!read_file(file, &text))
      return error(fhir::ErrorCategory::Internal, "exception", "cannot read " + file, "terminology-load");
    if (fhir::Status s = store->add_json_in_place(&text); !s) {
      s.issues().front().diagnostics = file + ": " + s.issues().front().diagnostics;
      return s;
    }
  }
  if (stats) {
    stats->code_systems = store->code_systems_.size();
    stats->value_sets = store->value_sets_.size();
    stats->concepts = 0;
    for (const auto& [url, cs] : store->code_systems_) stats->concepts += cs->concepts.size();
    stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  *out = std::move(store);
  return fhir::Status::ok();
}

fhir::Status Store::add_json(std::string_view json) {
  std::string copy(json);
  return add_json_in_place(&copy);
}

fhir::Status Store::add_json_in_place(std::string* json) {
  if (json->size() > kMaxJsonBytes)
    return error(fhir::ErrorCategory::Invalid, "too-costly", "terminology resource larger than 64 MB",
                 "terminology-too-large");
  rapidjson::Document doc;
  // In-situ parsing: strings point into the buffer (the load reads ~30 MB).
  doc.ParseInsitu(json->data());
  if (doc.HasParseError() || !doc.IsObject())
    return error(fhir::ErrorCategory::Invalid, "structure", "terminology resource is not a JSON object",
                 "terminology-malformed");
  std::string type = str_member(doc, "resourceType");
  std::string url = str_member(doc, "url");
  if (url.empty())
    return error(fhir::ErrorCategory::Invalid, "required", type + " without url", "terminology-no-url");
  if (type == "CodeSystem") {
    auto cs = std::make_unique<CodeSystem>();
    cs->url = url;
    cs->version = str_member(doc, "version");
    cs->name = str_member(doc, "name");
    cs->content = str_member(doc, "content");
    auto sensitive = doc.FindMember("caseSensitive");
    cs->case_sensitive = !(sensitive != doc.MemberEnd() && sensitive->value.IsBool() && !sensitive->value.GetBool());
    if (const JsonValue* concepts = array_member(doc, "concept")) {
      read_concepts(*concepts, -1, cs.get(), 0);
      read_parent_properties(*concepts, cs.get(), 0);
    }
    for (uint32_t i = 0; i < cs->concepts.size(); ++i)
      for (uint32_t p : cs->concepts[i].parents) cs->concepts[p].children.push_back(i);
    // A supplement adds designations/properties to another system; it defines no codes.
    if (cs->content == "supplement") return fhir::Status::ok();
    code_systems_[url] = std::move(cs);
    return fhir::Status::ok();
  }
  if (type == "ValueSet") {
    auto vs = std::make_unique<ValueSetDef>();
    vs->url = url;
    vs->name = str_member(doc, "name");
    auto compose = doc.FindMember("compose");
    if (compose != doc.MemberEnd() && compose->value.IsObject()) {
      if (const JsonValue* inc = array_member(compose->value, "include"))
        for (const JsonValue& i : inc->GetArray())
          if (i.IsObject()) vs->include.push_back(read_concept_set(i));
      if (const JsonValue* exc = array_member(compose->value, "exclude"))
        for (const JsonValue& i : exc->GetArray())
          if (i.IsObject()) vs->exclude.push_back(read_concept_set(i));
    }
    auto expansion = doc.FindMember("expansion");
    if (expansion != doc.MemberEnd() && expansion->value.IsObject())
      if (const JsonValue* contains = array_member(expansion->value, "contains"))
        for (const JsonValue& c : contains->GetArray())
          if (c.IsObject()) vs->expansion.emplace_back(str_member(c, "system"), str_member(c, "code"));
    cache_.clear();
    value_sets_[url] = std::move(vs);
    return fhir::Status::ok();
  }
  return error(fhir::ErrorCategory::Invalid, "not-supported", "not a CodeSystem or ValueSet: " + type,
               "terminology-wrong-type");
}

const CodeSystem* Store::code_system(std::string_view url) const {
  auto it = code_systems_.find(without_version(url));
  return it == code_systems_.end() ? nullptr : it->second.get();
}

const ValueSetDef* Store::value_set(std::string_view url) const {
  auto it = value_sets_.find(without_version(url));
  return it == value_sets_.end() ? nullptr : it->second.get();
}

fhir::Status Store::expand(std::string_view url, std::shared_ptr<const Expansion>* out) const {
  return expand_at_depth(url, 0, out);
}

fhir::Status Store::expand_at_depth(std::string_view url, int depth, std::shared_ptr<const Expansion>* out) const {
  url = without_version(url);
  {
    std::shared_lock lock(cache_mutex_);
    auto it = cache_.find(url);
    if (it != cache_.end()) {
      *out = it->second;
      return fhir::Status::ok();
    }
  }
  const ValueSetDef* vs = value_set(url);
  if (!vs)
    return error(fhir::ErrorCategory::NotFound, "not-found", "value set " + std::string(url) + " is not known",
                 "tx-unknown-valueset");
  if (depth > kMaxImportDepth)
    return error(fhir::ErrorCategory::Unprocessable, "too-costly",
                 "value set " + std::string(url) + " imports value sets too deeply (or in a cycle)",
                 "tx-import-depth");
  std::shared_ptr<const Expansion> computed;
  if (fhir::Status s = compute_expansion(*vs, depth, &computed); !s) return s;
  // Computed outside the lock (imports recurse); two threads may compute the
  // same expansion once each, and the first stored wins.
  std::unique_lock lock(cache_mutex_);
  auto [it, inserted] = cache_.emplace(std::string(url), computed);
  *out = it->second;
  return fhir::Status::ok();
}

fhir::Status Store::compute_expansion(const ValueSetDef& vs, int depth, std::shared_ptr<const Expansion>* out) const {
  auto expansion = std::make_shared<Expansion>();
  std::vector<std::string>& unchecked = expansion->unchecked_systems;
  auto mark_unchecked = [&](const std::string& system, std::string note) {
    if (std::find(unchecked.begin(), unchecked.end(), system) == unchecked.end()) unchecked.push_back(system);
    expansion->notes.push_back(std::move(note));
  };

  // The codes one include/exclude entry selects.
  auto select = [&](const ConceptSet& set, CodeSet* result) -> fhir::Status {
    CodeSet from_system;
    bool system_part = !set.system.empty();
    if (system_part) {
      const CodeSystem* cs = code_system(set.system);
      if (!set.concepts.empty()) {
        // Enumerated codes are members by definition; a complete system also
        // lets us drop codes it does not define.
        for (const auto& [code, display] : set.concepts) {
          if (cs && cs->is_complete()) {
            int64_t i = cs->find(code);
            if (i < 0) continue;
            from_system.add(set.system, cs->concepts[i].code,
                            display.empty() ? cs->concepts[i].display : display);
          } else {
            from_system.add(set.system, code, display);
          }
        }
      } else if (!cs || !cs->is_complete()) {
        mark_unchecked(set.system, cs ? "code system " + set.system + " is not complete in the store (content " +
                                            cs->content + ")"
                                      : "code system " + set.system + " is not in the store");
      } else {
        std::vector<bool> selected(cs->concepts.size(), true);
        for (const ConceptFilter& f : set.filters) {
          std::vector<bool> match(cs->concepts.size(), false);
          int64_t root = cs->find(f.value);
          bool hierarchical = f.property == "concept" || f.property == "code";
          if (hierarchical && (f.op == "is-a" || f.op == "descendent-of" || f.op == "is-not-a")) {
            if (root >= 0) collect_descendants(*cs, static_cast<uint32_t>(root), &match);
            if (f.op == "descendent-of" && root >= 0) match[static_cast<size_t>(root)] = false;
            if (f.op == "is-not-a") match.flip();
          } else if (hierarchical && f.op == "=") {
            if (root >= 0) match[static_cast<size_t>(root)] = true;
          } else if (hierarchical && f.op == "in") {
            size_t start = 0;
            while (start <= f.value.size()) {
              size_t comma = f.value.find(',', start);
              if (comma == std::string::npos) comma = f.value.size();
              int64_t i = cs->find(f.value.substr(start, comma - start));
              if (i >= 0) match[static_cast<size_t>(i)] = true;
              start = comma + 1;
            }
          } else {
            mark_unchecked(set.system, "filter " + f.property + " " + f.op + " " + f.value + " on " + set.system +
                                           " is not supported");
            match.assign(cs->concepts.size(), false);
            selected.assign(cs->concepts.size(), false);
          }
          for (size_t i = 0; i < selected.size(); ++i) selected[i] = selected[i] && match[i];
        }
        for (size_t i = 0; i < selected.size(); ++i)
          if (selected[i]) from_system.add(set.system, cs->concepts[i].code, cs->concepts[i].display);
      }
      if (from_system.codes.size() > kMaxExpansion)
        return error(fhir::ErrorCategory::Unprocessable, "too-costly", "expansion of " + vs.url + " is too large",
                     "tx-too-large");
    }
    // Imported value sets intersect with the system part (or with each other).
    bool first = !system_part;
    CodeSet acc = std::move(from_system);
    for (const std::string& url : set.value_sets) {
      std::shared_ptr<const Expansion> imported;
      if (fhir::Status s = expand_at_depth(url, depth + 1, &imported); !s) {
        if (s.category() != fhir::ErrorCategory::NotFound) return s;
        mark_unchecked(set.system, "imported value set " + url + " is not in the store");
        continue;
      }
      for (const std::string& u : imported->unchecked_systems) mark_unchecked(u, "via " + url);
      for (const std::string& n : imported->notes) expansion->notes.push_back(n);
      CodeSet next;
      for (const ExpandedCode& c : imported->codes)
        if (first || acc.keys.count(key_of(c.system, c.code))) next.add(c.system, c.code, c.display);
      acc = std::move(next);
      first = false;
    }
    for (ExpandedCode& c : acc.codes) result->add(c.system, c.code, c.display);
    return fhir::Status::ok();
  };

  CodeSet included;
  if (vs.include.empty()) {
    for (const auto& [system, code] : vs.expansion) included.add(system, code, "");
  }
  for (const ConceptSet& set : vs.include)
    if (fhir::Status s = select(set, &included); !s) return s;
  if (!vs.exclude.empty()) {
    CodeSet excluded;
    for (const ConceptSet& set : vs.exclude)
      if (fhir::Status s = select(set, &excluded); !s) return s;
    CodeSet kept;
    for (ExpandedCode& c : included.codes)
      if (!excluded.keys.count(key_of(c.system, c.code))) kept.add(c.system, c.code, c.display);
    included = std::move(kept);
  }
  if (included.codes.size() > kMaxExpansion)
    return error(fhir::ErrorCategory::Unprocessable, "too-costly", "expansion of " + vs.url + " is too large",
                 "tx-too-large");
  expansion->codes = std::move(included.codes);
  expansion->keys.reserve(expansion->codes.size() * 2);
  for (uint32_t i = 0; i < expansion->codes.size(); ++i) {
    const ExpandedCode& c = expansion->codes[i];
    expansion->keys.emplace(key_of(c.system, c.code), i);
    expansion->keys.emplace(key_of("", c.code), i);  // keeps the first code of that name
  }
  *out = std::move(expansion);
  return fhir::Status::ok();
}

CodeResult Store::validate_code(std::string_view value_set_url, std::string_view system, std::string_view code) const {
  CodeResult r;
  std::shared_ptr<const Expansion> expansion;
  fhir::Status s = expand(value_set_url, &expansion);
  if (!s) {
    r.validity = Validity::NotChecked;
    r.message = s.message();
    return r;
  }
  if (int64_t i = expansion->find(system, code); i >= 0) {
    r.validity = Validity::Valid;
    r.display = expansion->codes[static_cast<size_t>(i)].display;
    return r;
  }
  // A case-insensitive system may hold the code in another case.
  if (!system.empty()) {
    const CodeSystem* cs = code_system(system);
    if (cs && !cs->case_sensitive) {
      int64_t i = cs->find(code);
      if (i >= 0 && expansion->contains(system, cs->concepts[static_cast<size_t>(i)].code)) {
        r.validity = Validity::Valid;
        r.display = cs->concepts[static_cast<size_t>(i)].display;
        return r;
      }
    }
  }
  if (expansion->is_unchecked(system)) {
    // The content is not here, but the form of the code may be checkable.
    std::string_view form_system = system;
    if (form_system.empty() && expansion->unchecked_systems.size() == 1) form_system = expansion->unchecked_systems[0];
    if (std::string why = external_code_syntax(form_system, code); !why.empty()) {
      r.validity = Validity::Invalid;
      r.message = "code '" + std::string(code) + "' is not a valid " + why;
      return r;
    }
    r.validity = Validity::NotChecked;
    r.message = "membership of the code in value set " + std::string(value_set_url) +
                " cannot be checked here (" +
                (expansion->notes.empty() ? std::string("external code system") : expansion->notes.front()) + ")";
    return r;
  }
  r.validity = Validity::Invalid;
  const CodeSystem* cs = system.empty() ? nullptr : code_system(system);
  if (cs && cs->is_complete() && cs->find(code) < 0)
    r.message = "code '" + std::string(code) + "' is not defined in code system " + std::string(system);
  else
    r.message = "code '" + std::string(code) + "'" + (system.empty() ? "" : " of system " + std::string(system)) +
                " is not in value set " + std::string(value_set_url);
  return r;
}

CodeResult Store::lookup(std::string_view system, std::string_view code) const {
  CodeResult r;
  const CodeSystem* cs = code_system(system);
  if (!cs) {
    r.message = "code system " + std::string(system) + " is not in the store";
    return r;
  }
  int64_t i = cs->find(code);
  if (i >= 0) {
    r.validity = Validity::Valid;
    r.display = cs->concepts[static_cast<size_t>(i)].display;
  } else if (cs->is_complete()) {
    r.validity = Validity::Invalid;
    r.message = "code '" + std::string(code) + "' is not defined in code system " + std::string(system);
  } else {
    r.message = "code system " + std::string(system) + " is only partly known (content " + cs->content + ")";
  }
  return r;
}

Validity Store::subsumes(std::string_view system, std::string_view ancestor, std::string_view descendant) const {
  const CodeSystem* cs = code_system(system);
  if (!cs) return Validity::NotChecked;
  int64_t a = cs->find(ancestor), d = cs->find(descendant);
  if (a < 0 || d < 0) return cs->is_complete() ? Validity::Invalid : Validity::NotChecked;
  std::vector<bool> seen(cs->concepts.size(), false);
  collect_descendants(*cs, static_cast<uint32_t>(a), &seen);
  return seen[static_cast<size_t>(d)] ? Validity::Valid : Validity::Invalid;
}

}  // namespace espace::terminology
