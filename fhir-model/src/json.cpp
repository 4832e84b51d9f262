// FHIR JSON (hl7.org/fhir/R4/json.html) <-> Node.
//
// Parsing runs in two passes. A RapidJSON SAX pass builds a compact generic
// tree that remembers where every value and key starts in the input (for
// line/column in errors) and keeps number text verbatim. A typed pass then
// walks that tree against the Definitions: it needs random access within an
// object because `resourceType` may come after other properties and `_x`
// extension objects pair with `x` wherever they appear.
#include "espace/fhir/json.h"

#include <rapidjson/error/en.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace espace::fhir {

namespace {

// ---------------------------------------------------------------------------
// Pass 1: generic tree

enum class JKind : uint8_t { Null, False, True, Number, String, Object, Array };

struct JVal {
  JKind kind = JKind::Null;
  uint32_t offset = 0;  // byte offset of the value's first character
  uint32_t first = 0;   // arena index of the first child (objects: key, value, key, value...)
  uint32_t count = 0;   // members of an object, items of an array
  std::string_view text;  // decoded string or verbatim number text
};

const char* kind_name(JKind k) {
  switch (k) {
    case JKind::Null: return "null";
    case JKind::False:
    case JKind::True: return "a boolean";
    case JKind::Number: return "a number";
    case JKind::String: return "a string";
    case JKind::Object: return "an object";
    case JKind::Array: return "an array";
  }
  return "a value";
}

// Read-only stream over the input. RapidJSON copies its own string streams
// into locals while parsing, which would freeze Tell() as seen from the
// handler; a stream type without that optimisation reports live positions.
struct TrackingStream {
  using Ch = char;
  const char* head;
  const char* src;
  const char* end;
  Ch Peek() const { return src == end ? '\0' : *src; }
  Ch Take() { return src == end ? '\0' : *src++; }
  size_t Tell() const { return static_cast<size_t>(src - head); }
  // Output side is unused (no in-situ parsing) but required by the concept.
  Ch* PutBegin() { return nullptr; }
  void Put(Ch) {}
  void Flush() {}
  size_t PutEnd(Ch*) { return 0; }
};

class TreeBuilder : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, TreeBuilder> {
 public:
  TreeBuilder(std::string_view text, const TrackingStream& stream, int max_depth)
      : text_(text), stream_(stream), max_depth_(max_depth) {}

  bool Null() { return push(JKind::Null, here() - 4, {}); }
  bool Bool(bool b) { return push(b ? JKind::True : JKind::False, here() - (b ? 4 : 5), {}); }
  bool RawNumber(const char*, rapidjson::SizeType length, bool) {
    // Take the number from the input itself: its text is exactly what was written.
    size_t start = here() - length;
    return push(JKind::Number, start, text_.substr(start, length));
  }
  // Called by ParseString (below) before each string or key it parses.
  void string_starts(size_t opening_quote) { string_open_ = opening_quote; }
  // `copy` is false when str points into the input itself (no escapes).
  bool String(const char* str, rapidjson::SizeType length, bool copy) {
    std::string_view value;
    if (!copy) {
      value = std::string_view(str, length);
    } else {
      std::string_view raw = text_.substr(string_open_ + 1, here() - 1 - (string_open_ + 1));
      if (raw.size() == length) {
        value = raw;  // no escapes: decoded text equals the input
      } else {
        escaped_.emplace_back(str, length);
        value = escaped_.back();
      }
    }
    return push(JKind::String, string_open_, value);
  }
  bool Key(const char* str, rapidjson::SizeType length, bool copy) { return String(str, length, copy); }
  bool StartObject() { return open_container(); }
  bool StartArray() { return open_container(); }
  bool EndObject(rapidjson::SizeType members) { return close_container(JKind::Object, members, 2 * members); }
  bool EndArray(rapidjson::SizeType items) { return close_container(JKind::Array, items, items); }

  bool too_deep() const { return too_deep_; }
  size_t too_deep_offset() const { return too_deep_offset_; }
  const JVal& root() const { return stack_.back(); }
  const std::vector<JVal>& arena() const { return arena_; }

 private:
  size_t here() const { return stream_.Tell(); }

  bool push(JKind kind, size_t offset, std::string_view text) {
    JVal v;
    v.kind = kind;
    v.offset = static_cast<uint32_t>(offset);
    v.text = text;
    stack_.push_back(v);
    return true;
  }

  bool open_container() {
    if (static_cast<int>(open_offsets_.size()) >= max_depth_) {
      too_deep_ = true;
      too_deep_offset_ = here() - 1;
      return false;
    }
    open_offsets_.push_back(static_cast<uint32_t>(here() - 1));
    return true;
  }

  bool close_container(JKind kind, uint32_t count, size_t stack_items) {
    JVal v;
    v.kind = kind;
    v.offset = open_offsets_.back();
    open_offsets_.pop_back();
    v.count = count;
    v.first = static_cast<uint32_t>(arena_.size());
    auto from = stack_.end() - static_cast<std::ptrdiff_t>(stack_items);
    arena_.insert(arena_.end(), from, stack_.end());
    stack_.erase(from, stack_.end());
    stack_.push_back(v);
    return true;
  }

  std::string_view text_;
  const TrackingStream& stream_;
  int max_depth_;
  size_t string_open_ = 0;
  bool too_deep_ = false;
  size_t too_deep_offset_ = 0;
  std::vector<JVal> stack_;
  std::vector<JVal> arena_;
  std::vector<uint32_t> open_offsets_;
  std::deque<std::string> escaped_;  // stable storage for strings that had escapes
};

constexpr unsigned kReaderFlags = rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseValidateEncodingFlag;

// Length of the run of plain characters at the start of [p, end): printable
// ASCII other than '"' and '\\', which a JSON string holds verbatim. Sixteen
// (SSE2) or eight bytes at a time: a FHIR document's bytes are mostly such
// strings (a Binary's base64 data is one string as long as the document).
size_t plain_run(const char* p, const char* end) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  // Nonzero when some byte of x is below n (n <= 0x80); exact as "any".
  auto any_below = [](uint64_t x, uint64_t n) { return (x - kOnes * n) & ~x & kHighs; };
  const char* start = p;
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
  while (end - p >= 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // A signed comparison: bytes from 0x80 are negative, below 0x20 too.
    const __m128i special =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)), _mm_cmplt_epi8(x, space));
    if (const int mask = _mm_movemask_epi8(special)) return static_cast<size_t>(p - start) + __builtin_ctz(mask);
    p += 16;
  }
#endif
  while (end - p >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    if ((w & kHighs) | any_below(w, 0x20) | any_below(w ^ (kOnes * '"'), 1) | any_below(w ^ (kOnes * '\\'), 1)) break;
    p += 8;
  }
  while (p != end) {
    unsigned char c = static_cast<unsigned char>(*p);
    if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
    ++p;
  }
  return static_cast<size_t>(p - start);
}

}  // namespace
}  // namespace espace::fhir

// RapidJSON's own string parsing takes every character through the stream,
// validates it and copies it to its stack, even when the string is plain text
// whose value is exactly the input's bytes. This specialization for our
// stream and builder hands such strings to the builder as views of the input
// after one fast scan (plain_run); at an escape, a control character, a
// non-ASCII byte (UTF-8 to validate) or the end of input it continues with
// RapidJSON's code (ParseStringToStream) from that point, as before.
namespace rapidjson {
template <>
template <>
void GenericReader<UTF8<>, UTF8<>, CrtAllocator>::ParseString<espace::fhir::kReaderFlags, espace::fhir::TrackingStream,
                                                              espace::fhir::TreeBuilder>(
    espace::fhir::TrackingStream& is, espace::fhir::TreeBuilder& handler, bool isKey) {
  RAPIDJSON_ASSERT(is.Peek() == '\"');
  handler.string_starts(is.Tell());
  is.Take();
  const char* begin = is.src;
  const size_t plain = espace::fhir::plain_run(begin, is.end);
  is.src += plain;
  if (is.src != is.end && *is.src == '"') {
    is.Take();
    const SizeType length = static_cast<SizeType>(plain);
    if (RAPIDJSON_UNLIKELY(!(isKey ? handler.Key(begin, length, false) : handler.String(begin, length, false))))
      RAPIDJSON_PARSE_ERROR(kParseErrorTermination, is.Tell());
    return;
  }
  StackStream<char> stack_stream(stack_);
  for (size_t i = 0; i < plain; ++i) stack_stream.Put(begin[i]);
  ParseStringToStream<espace::fhir::kReaderFlags, UTF8<>, UTF8<>>(is, stack_stream);
  RAPIDJSON_PARSE_ERROR_EARLY_RETURN_VOID;
  const SizeType length = static_cast<SizeType>(stack_stream.Length()) - 1;
  const char* str = stack_stream.Pop();
  if (RAPIDJSON_UNLIKELY(!(isKey ? handler.Key(str, length, true) : handler.String(str, length, true))))
    RAPIDJSON_PARSE_ERROR(kParseErrorTermination, is.Tell());
}
}  // namespace rapidjson

namespace espace::fhir {
namespace {

// ---------------------------------------------------------------------------
// Pass 2: typed walk

bool is_integer_type(const TypeDef* t) {
  return t->name == "integer" || t->name == "positiveInt" || t->name == "unsignedInt";
}

// Checks an integer's lexical form and 32-bit range; returns its value via *out.
bool parse_int32(std::string_view s, long long* out) {
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && s[i] == '-') {
    negative = true;
    ++i;
  }
  if (i == s.size() || s.size() - i > 10) return false;
  long long v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  if (negative) v = -v;
  if (v < -2147483648LL || v > 2147483647LL) return false;
  *out = v;
  return true;
}

constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

// 1-based line and column (in characters, not bytes) of a byte offset.
void line_column(std::string_view text, size_t offset, int* line, int* column) {
  offset = std::min(offset, text.size());
  int l = 1, c = 1;
  for (size_t i = text.starts_with(kUtf8Bom) ? kUtf8Bom.size() : 0; i < offset; ++i) {
    unsigned char ch = static_cast<unsigned char>(text[i]);
    if (ch == '\n') {
      ++l;
      c = 1;
    } else if ((ch & 0xC0) != 0x80) {
      ++c;
    }
  }
  *line = l;
  *column = c;
}

class TypedWalker {
 public:
  TypedWalker(const Definitions& defs, std::string_view text, const std::vector<JVal>& arena)
      : defs_(defs), text_(text), arena_(arena) {
    resource_base_ = defs.type("Resource");
  }

  Status parse_root(const JVal& root, Node* out) {
    if (root.kind != JKind::Object)
      return fail(root.offset, "json-wrong-kind", "a resource must be a JSON object, found " +
                                                      std::string(kind_name(root.kind)));
    const TypeDef* type = nullptr;
    if (Status s = resource_type_of(root, resource_base_, &type); !s) return s;
    out->def = nullptr;
    out->type = type;
    out->name = type->name;
    path_.push_back({type->name, -1});
    return parse_object(root, type, out);
  }

 private:
  struct Segment {
    std::string_view name;
    int index;
  };

  struct Prop {
    const ElementDef* def = nullptr;
    const TypeDef* type = nullptr;
    std::string_view name;  // points into Definitions
    const JVal* value = nullptr;
    const JVal* ext = nullptr;
  };

  const JVal& member_key(const JVal& obj, uint32_t i) const { return arena_[obj.first + 2 * i]; }
  const JVal& member_value(const JVal& obj, uint32_t i) const { return arena_[obj.first + 2 * i + 1]; }
  const JVal& item(const JVal& arr, uint32_t i) const { return arena_[arr.first + i]; }

  std::string location() const {
    std::string out;
    for (const Segment& s : path_) {
      if (!out.empty()) out += '.';
      out += s.name;
      if (s.index >= 0) {
        out += '[';
        out += std::to_string(s.index);
        out += ']';
      }
    }
    return out;
  }

  Status fail(size_t offset, const char* message_id, std::string diagnostics) const {
    Issue issue;
    issue.severity = Severity::Error;
    // issue-type: "value" when the element is right but its value is not,
    // "structure" for everything about the shape of the document.
    const std::string_view id(message_id);
    issue.code = id == "json-invalid-integer" || id == "json-empty-string" ? "value" : "structure";
    issue.message_id = message_id;
    issue.expression = location();
    issue.diagnostics = issue.expression.empty() ? std::move(diagnostics)
                                                 : issue.expression + ": " + diagnostics;
    line_column(text_, offset, &issue.line, &issue.column);
    return Status::error(ErrorCategory::Invalid, std::move(issue));
  }

 private:
  // Finds `resourceType` in a resource object and resolves it to a concrete
  // resource type that is (or derives from) `expected`.
  Status resource_type_of(const JVal& obj, const TypeDef* expected, const TypeDef** out) {
    for (uint32_t i = 0; i < obj.count; ++i) {
      if (member_key(obj, i).text != "resourceType") continue;
      const JVal& v = member_value(obj, i);
      if (v.kind != JKind::String)
        return fail(v.offset, "json-wrong-kind",
                    "resourceType must be a string, found " + std::string(kind_name(v.kind)));
      const TypeDef* t = defs_.type(v.text);
      if (!t || t->kind != TypeKind::Resource)
        return fail(v.offset, "json-unknown-resource-type",
                    "unknown resourceType '" + std::string(v.text) + "'");
      if (t->is_abstract)
        return fail(v.offset, "json-abstract-resource-type",
                    "resourceType '" + std::string(v.text) + "' is abstract");
      if (expected && !t->is_a(expected))
        return fail(v.offset, "json-wrong-resource-type",
                    "a " + expected->name + " is expected here, not " + t->name);
      *out = t;
      return Status::ok();
    }
    return fail(obj.offset, "json-missing-resource-type", "the resource has no resourceType");
  }

  static std::string_view json_name(const ElementDef* def, const TypeDef* chosen) {
    if (def->is_choice)
      for (size_t k = 0; k < def->types.size(); ++k)
        if (def->types[k] == chosen) return def->choice_names[k];
    return def->name;
  }

  // Fills `node` (whose type is `type`) from the members of a JSON object.
  Status parse_object(const JVal& obj, const TypeDef* type, Node* node) {
    const bool is_resource = type->kind == TypeKind::Resource;
    if (obj.count == 0) return fail(obj.offset, "json-empty-object", "objects must not be empty");
    // Props of all open objects share one stack (no allocation per object);
    // this object's are [base, props_.size()), addressed by index because
    // nested objects push onto the same vector.
    const size_t base = props_.size();
    struct Truncate {
      std::vector<Prop>& v;
      size_t n;
      ~Truncate() { v.resize(n); }
    } truncate{props_, base};
    bool seen_resource_type = false;
    for (uint32_t i = 0; i < obj.count; ++i) {
      const JVal& key = member_key(obj, i);
      std::string_view name = key.text;
      if (is_resource && name == "resourceType") {
        if (seen_resource_type)
          return fail(key.offset, "json-duplicate-key", "property 'resourceType' occurs twice");
        seen_resource_type = true;
        continue;
      }
      const bool underscore = !name.empty() && name.front() == '_';
      std::string_view lookup = underscore ? name.substr(1) : name;
      const TypeDef* chosen = nullptr;
      const ElementDef* def = type->find_json(lookup, &chosen);
      if (!def || !chosen || (underscore && !chosen->is_primitive())) {
        path_.push_back({name, -1});
        Status s = fail(key.offset, "json-unknown-element",
                        "unknown property '" + std::string(name) + "' in " + type->name);
        path_.pop_back();
        return s;
      }
      // At most one prop per element, so this scan is bounded by the type's size.
      Prop* prop = nullptr;
      for (size_t k = base; k < props_.size(); ++k)
        if (props_[k].def == def) prop = &props_[k];
      if (prop && prop->type != chosen) {
        path_.push_back({name, -1});
        Status s = fail(key.offset, "json-multiple-choice",
                        "only one of the " + def->name + "[x] choices may be present");
        path_.pop_back();
        return s;
      }
      if (prop && (underscore ? prop->ext != nullptr : prop->value != nullptr)) {
        path_.push_back({name, -1});
        Status s = fail(key.offset, "json-duplicate-key", "property '" + std::string(name) + "' occurs twice");
        path_.pop_back();
        return s;
      }
      if (!prop) {
        prop = &props_.emplace_back();
        prop->def = def;
        prop->type = chosen;
        prop->name = json_name(def, chosen);
      }
      const JVal& value = member_value(obj, i);
      if (underscore) {
        prop->ext = &value;
      } else {
        prop->value = &value;
      }
    }
    const size_t end = props_.size();
    std::stable_sort(props_.begin() + static_cast<std::ptrdiff_t>(base), props_.end(),
                     [](const Prop& a, const Prop& b) { return a.def->order < b.def->order; });
    // Reserve the exact number of children so Nodes are never moved while growing.
    size_t child_count = node->children.size();
    for (size_t k = base; k < end; ++k) {
      const Prop& p = props_[k];
      if (!p.def->is_array()) {
        ++child_count;
      } else {
        const JVal* v = p.value ? p.value : p.ext;
        child_count += v->kind == JKind::Array ? v->count : 1;
      }
    }
    node->children.reserve(child_count);
    for (size_t k = base; k < end; ++k) {
      const Prop p = props_[k];  // a copy: nested objects may reallocate props_
      path_.push_back({p.name, -1});
      Status s = p.type->is_primitive() ? parse_primitive_prop(p, node) : parse_complex_prop(p, node);
      path_.pop_back();
      if (!s) return s;
    }
    return Status::ok();
  }

  Status parse_complex_prop(const Prop& p, Node* parent) {
    const JVal& v = *p.value;
    if (p.def->is_array()) {
      if (v.kind != JKind::Array)
        return fail(v.offset, "json-wrong-kind",
                    "'" + std::string(p.name) + "' repeats and must be an array, found " + kind_name(v.kind));
      if (v.count == 0) return fail(v.offset, "json-empty-array", "arrays must not be empty");
      for (uint32_t i = 0; i < v.count; ++i) {
        path_.back().index = static_cast<int>(i);
        if (Status s = parse_complex_value(p, item(v, i), parent); !s) return s;
      }
      path_.back().index = -1;
      return Status::ok();
    }
    if (v.kind == JKind::Array)
      return fail(v.offset, "json-wrong-kind", "'" + std::string(p.name) + "' does not repeat; an array is not allowed");
    return parse_complex_value(p, v, parent);
  }

  Status parse_complex_value(const Prop& p, const JVal& v, Node* parent) {
    if (v.kind != JKind::Object)
      return fail(v.offset, v.kind == JKind::Null ? "json-null" : "json-wrong-kind",
                  "an object is expected, found " + std::string(kind_name(v.kind)));
    Node child;
    child.def = p.def;
    child.name = p.name;
    const TypeDef* type = p.type;
    if (type->kind == TypeKind::Resource) {
      // Bundle.entry.resource, contained, Parameters.parameter.resource...:
      // the concrete type comes from the nested resourceType.
      if (Status s = resource_type_of(v, type, &type); !s) return s;
    }
    child.type = type;
    if (Status s = parse_object(v, type, &child); !s) return s;
    parent->children.push_back(std::move(child));
    return Status::ok();
  }

  Status parse_primitive_prop(const Prop& p, Node* parent) {
    const JVal* values = p.value;
    const JVal* exts = p.ext;
    if (p.def->is_array()) {
      if (values && values->kind != JKind::Array)
        return fail(values->offset, "json-wrong-kind",
                    "'" + std::string(p.name) + "' repeats and must be an array, found " + kind_name(values->kind));
      if (exts && exts->kind != JKind::Array)
        return fail(exts->offset, "json-wrong-kind",
                    "'_" + std::string(p.name) + "' must be an array, found " + kind_name(exts->kind));
      if (values && values->count == 0) return fail(values->offset, "json-empty-array", "arrays must not be empty");
      if (exts && exts->count == 0) return fail(exts->offset, "json-empty-array", "arrays must not be empty");
      if (values && exts && values->count != exts->count)
        return fail(exts->offset, "json-array-mismatch",
                    "'" + std::string(p.name) + "' has " + std::to_string(values->count) + " items but '_" +
                        std::string(p.name) + "' has " + std::to_string(exts->count));
      uint32_t n = values ? values->count : exts->count;
      for (uint32_t i = 0; i < n; ++i) {
        path_.back().index = static_cast<int>(i);
        const JVal* v = values ? &item(*values, i) : nullptr;
        const JVal* e = exts ? &item(*exts, i) : nullptr;
        if (v && v->kind == JKind::Null) v = nullptr;
        if (e && e->kind == JKind::Null) e = nullptr;
        if (!v && !e)
          return fail((values ? item(*values, i) : item(*exts, i)).offset, "json-null",
                      "item " + std::to_string(i) + " of '" + std::string(p.name) +
                          "' is null in both the value and the extension array");
        if (Status s = parse_primitive_value(p, v, e, parent); !s) return s;
      }
      path_.back().index = -1;
      return Status::ok();
    }
    if (values && values->kind == JKind::Array)
      return fail(values->offset, "json-wrong-kind", "'" + std::string(p.name) + "' does not repeat; an array is not allowed");
    if (exts && exts->kind == JKind::Array)
      return fail(exts->offset, "json-wrong-kind", "'_" + std::string(p.name) + "' does not repeat; an array is not allowed");
    if (values && values->kind == JKind::Null)
      return fail(values->offset, "json-null", "null is not allowed here");
    if (exts && exts->kind == JKind::Null)
      return fail(exts->offset, "json-null", "null is not allowed here");
    return parse_primitive_value(p, values, exts, parent);
  }

  Status parse_primitive_value(const Prop& p, const JVal* v, const JVal* e, Node* parent) {
    Node child;
    child.def = p.def;
    child.type = p.type;
    child.name = p.name;
    if (v) {
      if (Status s = check_primitive(p.type, *v); !s) return s;
      child.value.assign(v->text.data(), v->text.size());
      if (v->kind == JKind::True) child.value = "true";
      if (v->kind == JKind::False) child.value = "false";
      child.has_value = true;
    }
    if (e) {
      if (e->kind != JKind::Object)
        return fail(e->offset, "json-wrong-kind",
                    "'_" + std::string(p.name) + "' must hold an object, found " + kind_name(e->kind));
      if (Status s = parse_object(*e, p.type, &child); !s) return s;
    }
    parent->children.push_back(std::move(child));
    return Status::ok();
  }

  Status check_primitive(const TypeDef* type, const JVal& v) {
    switch (type->json_value) {
      case JsonValueKind::Boolean:
        if (v.kind != JKind::True && v.kind != JKind::False)
          return fail(v.offset, "json-wrong-kind",
                      type->name + " must be a JSON boolean, found " + kind_name(v.kind));
        return Status::ok();
      case JsonValueKind::Number:
        if (v.kind != JKind::Number)
          return fail(v.offset, "json-wrong-kind",
                      type->name + " must be a JSON number, found " + kind_name(v.kind));
        if (is_integer_type(type)) {
          long long n = 0;
          if (!parse_int32(v.text, &n))
            return fail(v.offset, "json-invalid-integer",
                        type->name + " must be a whole number within the 32-bit range, found " +
                            std::string(v.text));
          if (type->name == "positiveInt" && n < 1)
            return fail(v.offset, "json-invalid-integer", "positiveInt must be 1 or more");
          if (type->name == "unsignedInt" && n < 0)
            return fail(v.offset, "json-invalid-integer", "unsignedInt must not be negative");
        }
        return Status::ok();
      case JsonValueKind::String:
        if (v.kind != JKind::String)
          return fail(v.offset, "json-wrong-kind",
                      type->name + " must be a JSON string, found " + kind_name(v.kind));
        if (v.text.empty()) return fail(v.offset, "json-empty-string", "strings must not be empty");
        return Status::ok();
    }
    return Status::ok();
  }

  const Definitions& defs_;
  std::string_view text_;
  const std::vector<JVal>& arena_;
  const TypeDef* resource_base_ = nullptr;
  std::vector<Segment> path_;
  std::vector<Prop> props_;
};

Status syntax_error(std::string_view text, size_t offset, const char* message_id, std::string diagnostics,
                    ErrorCategory category = ErrorCategory::Invalid) {
  Issue issue;
  issue.severity = Severity::Error;
  issue.code = category == ErrorCategory::TooLarge ? "too-long" : "structure";
  issue.message_id = message_id;
  issue.diagnostics = std::move(diagnostics);
  if (category != ErrorCategory::TooLarge) line_column(text, offset, &issue.line, &issue.column);
  return Status::error(category, std::move(issue));
}

// ---------------------------------------------------------------------------
// Writing

bool is_json_number(std::string_view s) {
  size_t i = 0, n = s.size();
  auto digits = [&] {
    size_t start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') ++i;
    return i > start;
  };
  if (i < n && s[i] == '-') ++i;
  if (i < n && s[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == n;
}

// Compact JSON into a std::string, byte for byte what rapidjson::Writer (UTF-8
// in and out, default flags) writes, but with runs of plain characters
// appended in one piece instead of one character at a time: the base64 data
// of a Binary is most of the stored bytes.
class CompactWriter {
 public:
  explicit CompactWriter(std::string& out) : out_(out) {}

  void StartObject() { open('{'); }
  void EndObject() { close('}'); }
  void StartArray() { open('['); }
  void EndArray() { close(']'); }
  void Key(const char* s, rapidjson::SizeType n) { String(s, n); }
  void String(const char* s, rapidjson::SizeType n) {
    prefix();
    out_.push_back('"');
    const char* end = s + n;
    while (s != end) {
      size_t plain = plain_run(s, end);
      out_.append(s, plain);
      s += plain;
      // Bytes from 0x80 pass through unchanged; only quotes, backslashes and
      // control characters are escaped.
      while (s != end && static_cast<unsigned char>(*s) >= 0x80) out_.push_back(*s++);
      if (s != end && (static_cast<unsigned char>(*s) < 0x20 || *s == '"' || *s == '\\')) escape(*s++);
    }
    out_.push_back('"');
  }
  void Bool(bool b) {
    prefix();
    out_.append(b ? "true" : "false");
  }
  void Null() {
    prefix();
    out_.append("null");
  }
  void RawValue(const char* s, size_t n, rapidjson::Type) {
    prefix();
    out_.append(s, n);
  }

 private:
  // The separator before a value: ',' between items and members, ':' after a key.
  void prefix() {
    if (levels_.empty()) return;
    Level& level = levels_.back();
    if (level.count > 0) out_.push_back(level.in_array || level.count % 2 == 0 ? ',' : ':');
    ++level.count;
  }
  void open(char c) {
    prefix();
    out_.push_back(c);
    levels_.push_back({c == '[', 0});
  }
  void close(char c) {
    levels_.pop_back();
    out_.push_back(c);
  }
  void escape(char c) {
    static const char* hex = "0123456789ABCDEF";
    out_.push_back('\\');
    switch (c) {
      case '"': out_.push_back('"'); return;
      case '\\': out_.push_back('\\'); return;
      case '\b': out_.push_back('b'); return;
      case '\t': out_.push_back('t'); return;
      case '\n': out_.push_back('n'); return;
      case '\f': out_.push_back('f'); return;
      case '\r': out_.push_back('r'); return;
      default: {
        const unsigned char u = static_cast<unsigned char>(c);
        const char code[] = {'u', '0', '0', hex[u >> 4], hex[u & 15]};
        out_.append(code, sizeof code);
      }
    }
  }

  struct Level {
    bool in_array;
    size_t count;  // values written (an object's keys count too)
  };
  std::string& out_;
  std::vector<Level> levels_;
};

// Slightly more than the compact JSON of `node` usually takes: values and
// names plus punctuation; escapes are rare.
size_t json_size_estimate(const Node& node) {
  size_t size = node.value.size() + node.name.size() + 8;
  for (const Node& c : node.children) size += json_size_estimate(c);
  return size;
}

template <typename Writer>
class NodeWriter {
 public:
  explicit NodeWriter(Writer& w) : w_(w) {}

  void object(const Node& node) {
    w_.StartObject();
    if (node.is_resource()) {
      key("resourceType");
      str(node.type->name);
    }
    members(node);
    w_.EndObject();
  }

 private:
  void str(std::string_view s) { w_.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); }
  // Nodes built by code may leave `name` empty; the element name is then right
  // for everything but a choice.
  static std::string_view name_of(const Node& n) {
    return n.name.empty() && n.def ? std::string_view(n.def->name) : n.name;
  }
  void key(std::string_view s) { w_.Key(s.data(), static_cast<rapidjson::SizeType>(s.size())); }
  void underscore_key(std::string_view s) {
    key_buffer_.assign(1, '_');
    key_buffer_.append(s);
    key(key_buffer_);
  }

  void primitive_value(const Node& n) {
    switch (n.type->json_value) {
      case JsonValueKind::Boolean:
        w_.Bool(n.value == "true");
        return;
      case JsonValueKind::Number:
        // Exact lexical text; anything that is not a JSON number (a bug
        // upstream) is written as a string so the output stays valid JSON.
        if (is_json_number(n.value))
          w_.RawValue(n.value.data(), n.value.size(), rapidjson::kNumberType);
        else
          str(n.value);
        return;
      case JsonValueKind::String:
        str(n.value);
        return;
    }
  }

  // Writes the id/extension children of a primitive as the `_name` object.
  void extension_object(const Node& n) {
    w_.StartObject();
    members(n);
    w_.EndObject();
  }

  // Children are grouped by element: parsers keep them in definition order,
  // but code that edits Nodes might not, and an element split in two runs
  // would be written as a duplicate key. A stable sort by element order
  // (only when needed) keeps items of one element together and in order.
  void members(const Node& node) {
    const size_t base = scratch_.size();
    bool sorted = true;
    for (const Node& c : node.children) {
      if (scratch_.size() > base && order_of(*scratch_.back()) > order_of(c)) sorted = false;
      scratch_.push_back(&c);
    }
    const size_t end = scratch_.size();
    if (!sorted)
      std::stable_sort(scratch_.begin() + static_cast<std::ptrdiff_t>(base), scratch_.end(),
                       [](const Node* a, const Node* b) { return order_of(*a) < order_of(*b); });
    size_t i = base;
    while (i < end) {
      size_t j = i + 1;
      while (j < end && scratch_[j]->def == scratch_[i]->def && scratch_[j]->name == scratch_[i]->name) ++j;
      group(i, j);
      i = j;
    }
    scratch_.resize(base);
  }

  static int order_of(const Node& n) { return n.def ? n.def->order : INT32_MAX; }

  // Writes scratch_[from, to): the items of one element. Indices, not
  // iterators: nested objects push onto scratch_ and may reallocate it.
  void group(size_t from, size_t to) {
    const Node& first = *scratch_[from];
    const bool array = first.def && first.def->is_array();
    if (first.is_primitive()) {
      bool any_value = false, any_ext = false;
      for (size_t k = from; k < to; ++k) {
        any_value |= scratch_[k]->has_value;
        any_ext |= !scratch_[k]->children.empty();
      }
      if (!array) {
        // A non-repeating element appears once; extra items (a caller bug) are dropped.
        if (first.has_value) {
          key(name_of(first));
          primitive_value(first);
        }
        if (!first.children.empty()) {
          underscore_key(name_of(first));
          extension_object(first);
        }
        return;
      }
      if (any_value) {
        key(name_of(first));
        w_.StartArray();
        for (size_t k = from; k < to; ++k) {
          if (!scratch_[k]->has_value && scratch_[k]->children.empty()) continue;
          if (scratch_[k]->has_value)
            primitive_value(*scratch_[k]);
          else
            w_.Null();
        }
        w_.EndArray();
      }
      if (any_ext) {
        underscore_key(name_of(first));
        w_.StartArray();
        for (size_t k = from; k < to; ++k) {
          if (!scratch_[k]->has_value && scratch_[k]->children.empty()) continue;
          if (!scratch_[k]->children.empty())
            extension_object(*scratch_[k]);
          else
            w_.Null();
        }
        w_.EndArray();
      }
      return;
    }
    key(name_of(first));
    if (!array) {
      object(first);
      return;
    }
    w_.StartArray();
    for (size_t k = from; k < to; ++k) object(*scratch_[k]);
    w_.EndArray();
  }

  Writer& w_;
  std::string key_buffer_;
  std::vector<const Node*> scratch_;
};

}  // namespace

Status parse_json(const Definitions& defs, std::string_view text, Node* out, const ParseLimits& limits) {
  if (text.size() > limits.max_bytes)
    return syntax_error(text, 0, "json-too-large",
                        "the document has " + std::to_string(text.size()) + " bytes; the limit is " +
                            std::to_string(limits.max_bytes),
                        ErrorCategory::TooLarge);
  if (text.size() >= UINT32_MAX)
    return syntax_error(text, 0, "json-too-large", "the document is too large", ErrorCategory::TooLarge);

  // A leading UTF-8 byte order mark is tolerated (RFC 8259 section 8.1);
  // offsets stay relative to the whole text.
  const size_t bom = text.starts_with(kUtf8Bom) ? kUtf8Bom.size() : 0;
  TrackingStream stream{text.data(), text.data() + bom, text.data() + text.size()};
  TreeBuilder builder(text, stream, limits.max_depth);
  rapidjson::Reader reader;
  rapidjson::ParseResult result = reader.Parse<kReaderFlags>(stream, builder);
  if (builder.too_deep())
    return syntax_error(text, builder.too_deep_offset(), "json-too-deep",
                        "JSON nesting is deeper than " + std::to_string(limits.max_depth) + " levels");
  if (result.IsError())
    return syntax_error(text, result.Offset(), "json-syntax",
                        std::string("JSON syntax error: ") + rapidjson::GetParseError_En(result.Code()));
  // The stream reports NUL at the end of input, so a NUL byte after the
  // document looks like the end to RapidJSON: anything unread is an error.
  if (stream.src != stream.end)
    return syntax_error(text, stream.Tell(), "json-syntax", "JSON syntax error: unexpected NUL character");

  TypedWalker walker(defs, text, builder.arena());
  *out = Node();
  return walker.parse_root(builder.root(), out);
}

std::string write_json(const Node& resource, const JsonWriteOptions& opts) {
  if (opts.pretty) {
    rapidjson::StringBuffer buffer;
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buffer);
    w.SetIndent(' ', 2);
    NodeWriter<decltype(w)>(w).object(resource);
    return std::string(buffer.GetString(), buffer.GetSize());
  }
  std::string out;
  // Sized once: growing by doubling would allocate and copy a document of
  // megabytes (a Binary) several times.
  out.reserve(json_size_estimate(resource));
  CompactWriter w(out);
  NodeWriter<CompactWriter>(w).object(resource);
  return out;
}

}  // namespace espace::fhir
