// FHIR XML (hl7.org/fhir/R4/xml.html) <-> Node.
//
// Reading: libxml2's SAX2 parser on a hardened context (no DTD, no entity
// substitution, no network; a DOCTYPE stops the parse as soon as it is seen;
// element depth is checked as elements open) feeds Nodes directly, checked
// against the Definitions; no DOM is built. Writing appends straight to a
// std::string.
#include "espace/fhir/xml.h"
#include "espace/fhir/xml_sax.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>

#include <algorithm>
#include <climits>
#include <cstdint>

namespace espace::fhir {
namespace {

constexpr std::string_view kFhirNamespace = "http://hl7.org/fhir";
constexpr std::string_view kXhtmlNamespace = "http://www.w3.org/1999/xhtml";
constexpr std::string_view kXmlNamespace = "http://www.w3.org/XML/1998/namespace";
constexpr std::string_view kSchemaInstanceNamespace = "http://www.w3.org/2001/XMLSchema-instance";

// Deepest markup accepted inside a narrative div given to write_xml.
constexpr int kMaxDivDepth = 256;

std::string_view sv(const xmlChar* s) {
  return s ? std::string_view(reinterpret_cast<const char*>(s)) : std::string_view();
}

bool is_xml_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool all_whitespace(std::string_view s) {
  for (char c : s)
    if (!is_xml_space(c)) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Escaping

// Length of the valid UTF-8 sequence of an XML character starting at p, or 0.
// Rejects overlongs, surrogates, U+FFFE/U+FFFF and truncated sequences.
size_t utf8_xml_char_length(const unsigned char* p, const unsigned char* end) {
  const unsigned char c = *p;
  size_t length = 0;
  uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) { length = 2; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { length = 3; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { length = 4; cp = c & 0x07; }
  else return 0;
  if (static_cast<size_t>(end - p) < length) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  if ((length == 3 && cp < 0x800) || (length == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF) return 0;
  return length;
}

// Appends `s` escaped for XML. Invalid UTF-8 and characters XML 1.0 cannot
// carry (most C0 controls, U+FFFE/U+FFFF) become U+FFFD so the output is
// always well-formed. Runs of ordinary characters are copied in one go.
void append_escaped(std::string& out, std::string_view s, bool attribute) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned char* run = p;
    while (p < end) {
      const unsigned char c = *p;
      if (c >= 0x80) {
        size_t length = utf8_xml_char_length(p, end);
        if (length == 0) break;
        p += length;
      } else if (c >= 0x20 && c != '&' && c != '<' && c != '>' && c != '"') {
        ++p;
      } else if (!attribute && (c == '"' || c == '\n' || c == '\t')) {
        ++p;  // literal in text content
      } else {
        break;
      }
    }
    out.append(reinterpret_cast<const char*>(run), static_cast<size_t>(p - run));
    if (p == end) break;
    switch (*p) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      // In attributes these would be normalised to spaces on reading.
      case '\n': out += "&#10;"; break;
      case '\t': out += "&#9;"; break;
      case '\r': out += "&#13;"; break;  // even in text, a raw CR is normalised away on reading
      default: out += kReplacement; break;  // C0 control or invalid UTF-8 byte
    }
    ++p;
  }
}

// ---------------------------------------------------------------------------
// Element names and lexical checks

std::string_view json_name_of(const ElementDef* def, const TypeDef* chosen) {
  if (def->is_choice) {
    for (size_t i = 0; i < def->types.size() && i < def->choice_names.size(); ++i)
      if (def->types[i] == chosen) return def->choice_names[i];
  }
  return def->name;
}

// JSON can only carry numbers and booleans in their JSON grammar, so the XML
// text of those primitives is checked here (the rest is the validator's job).
bool is_json_number(std::string_view s, bool integer_only) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  if (i >= s.size()) return false;
  if (s[i] == '0') ++i;
  else if (s[i] >= '1' && s[i] <= '9')
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  else return false;
  if (integer_only) return i == s.size();
  if (i < s.size() && s[i] == '.') {
    ++i;
    size_t digits = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == digits) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    size_t digits = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == digits) return false;
  }
  return i == s.size();
}

// ---------------------------------------------------------------------------
// Reading: SAX events straight into Nodes (no DOM), on a hardened context.

Issue make_issue(std::string code, std::string message_id, std::string diagnostics, std::string expression,
                 int line) {
  Issue i;
  i.code = std::move(code);
  i.message_id = std::move(message_id);
  i.diagnostics = std::move(diagnostics);
  i.expression = std::move(expression);
  i.line = line;
  return i;
}

class SaxReader {
 public:
  enum class Mode {
    Resource,  // a FHIR resource into a Node
    DivOnly,   // a lone Narrative div (from JSON) into its normalised text
  };
  // With DivOnly: accept elements without namespace as XHTML (write_xml
  // repairs a JSON div that lacks its xmlns rather than dropping it).
  bool lenient_namespace = false;

  SaxReader(const Definitions* defs, Mode mode, int max_depth) : defs_(defs), mode_(mode), max_depth_(max_depth) {}

  Status run(std::string_view text) {
    if (text.size() > static_cast<size_t>(INT_MAX))
      return Status::error(ErrorCategory::TooLarge,
                           make_issue("too-long", "xml-too-large", "XML document is too large", "", 0));
    ctxt_ = make_hardened_sax_context(text, {on_start, on_end, on_characters, on_doctype, on_error}, this);
    if (!ctxt_)
      return Status::error(ErrorCategory::Internal, make_issue("exception", "xml-parser-unavailable",
                                                               "could not create an XML parser", "", 0));

    xmlParseDocument(ctxt_);
    const bool well_formed = ctxt_->wellFormed != 0;
    if (ctxt_->myDoc) xmlFreeDoc(ctxt_->myDoc);  // none expected without tree callbacks
    ctxt_->myDoc = nullptr;
    xmlFreeParserCtxt(ctxt_);
    ctxt_ = nullptr;

    if (failed_) return std::move(status_);  // whichever error came first wins
    if (!well_formed || have_syntax_error_ || !done_) {
      Issue i = make_issue("structure", "xml-malformed",
                           "XML is not well-formed: " + (have_syntax_error_ ? syntax_error_ : std::string("no root element")),
                           "", syntax_line_);
      i.column = syntax_column_;
      return Status::error(ErrorCategory::Invalid, std::move(i));
    }
    return Status::ok();
  }

  Node take_resource() { return std::move(result_); }
  std::string take_div() { return std::move(result_.value); }

 private:
  struct Frame {
    enum Kind : uint8_t { Element, Wrapper, Xhtml };
    Kind kind = Element;
    bool has_resource = false;  // Wrapper: its resource has been read
    int line = 0;
    int index = -1;             // position among the items of a repeating element
    std::string_view step;      // path step ("" for a resource inside a wrapper)
    Node node;
    std::vector<std::pair<const ElementDef*, int>> item_counts;
  };

  const Definitions* defs_;
  Mode mode_;
  int max_depth_;
  xmlParserCtxtPtr ctxt_ = nullptr;
  std::vector<Frame> frames_;
  int depth_ = 0;
  int div_depth_ = 0;         // elements open inside the narrative div, the div included
  bool div_tag_open_ = false; // "<p attrs" written, ">" or "/>" not yet
  Node result_;
  bool done_ = false;
  bool failed_ = false;
  Status status_;
  bool have_syntax_error_ = false;
  std::string syntax_error_;
  int syntax_line_ = 0;
  int syntax_column_ = 0;

  static SaxReader* self(void* ctx) {
    return static_cast<SaxReader*>(static_cast<xmlParserCtxtPtr>(ctx)->_private);
  }

  int line() const { return ctxt_ && ctxt_->input ? ctxt_->input->line : 0; }

  std::string path_text(std::string_view extra_step) const {
    std::string p;
    auto add = [&p](std::string_view step, int index) {
      if (step.empty()) return;
      if (!p.empty()) p += '.';
      p += step;
      if (index >= 0) {
        p += '[';
        p += std::to_string(index);
        p += ']';
      }
    };
    for (const Frame& f : frames_) add(f.step, f.index);
    add(extra_step, -1);
    return p;
  }

  void stop() {
    if (ctxt_) xmlStopParser(ctxt_);
  }

  // Records the first error (with the location of the frames open now plus
  // `extra_step`) and stops the parser.
  void fail(int at_line, std::string code, std::string message_id, std::string diagnostics,
            std::string_view extra_step = {}) {
    if (failed_) return;
    failed_ = true;
    const std::string where = at_line > 0 ? " (line " + std::to_string(at_line) + ")" : std::string();
    status_ = Status::error(ErrorCategory::Invalid, make_issue(std::move(code), std::move(message_id),
                                                               std::move(diagnostics) + where,
                                                               path_text(extra_step), at_line));
    stop();
  }

  void fail_bare(ErrorCategory category, std::string code, std::string message_id, std::string diagnostics,
                 int at_line) {
    if (failed_) return;
    failed_ = true;
    status_ = Status::error(category, make_issue(std::move(code), std::move(message_id), std::move(diagnostics),
                                                 "", at_line));
    stop();
  }

  // --- libxml2 callbacks ---------------------------------------------------

  // "<!DOCTYPE name ..." has been read; nothing declared in it is ever looked at.
  static void on_doctype(void* ctx, const xmlChar*, const xmlChar*, const xmlChar*) {
    SaxReader* r = self(ctx);
    if (r->have_syntax_error_) return;
    r->fail_bare(ErrorCategory::Invalid, "not-supported", "xml-doctype-forbidden",
                 "XML documents with a DOCTYPE (DTD) are not accepted", r->line());
  }

  // Keeps libxml2 quiet on stderr without touching its global handlers.
  static void on_error(void* ctx, xmlErrorPtr error) {
    if (!ctx || !error || error->level < XML_ERR_ERROR) return;
    SaxReader* r = self(ctx);
    if (r->failed_ || r->have_syntax_error_) return;
    r->have_syntax_error_ = true;
    r->syntax_error_ = error->message ? error->message : "malformed XML";
    while (!r->syntax_error_.empty() && is_xml_space(r->syntax_error_.back())) r->syntax_error_.pop_back();
    r->syntax_line_ = error->line;
    r->syntax_column_ = error->int2;
    r->stop();  // nothing after a well-formedness error is worth reading
  }

  static void on_start(void* ctx, const xmlChar* localname, const xmlChar*, const xmlChar* uri, int,
                       const xmlChar**, int nb_attributes, int, const xmlChar** attributes) {
    SaxReader* r = self(ctx);
    if (r->failed_ || r->have_syntax_error_) return;
    if (++r->depth_ > r->max_depth_) {
      r->fail_bare(ErrorCategory::Invalid, "too-costly", "xml-too-deep",
                   "XML elements are nested more than " + std::to_string(r->max_depth_) + " deep", r->line());
      return;
    }
    r->start_element(sv(localname), sv(uri), nb_attributes, attributes);
  }

  static void on_end(void* ctx, const xmlChar* localname, const xmlChar*, const xmlChar*) {
    SaxReader* r = self(ctx);
    if (r->failed_ || r->have_syntax_error_) return;
    --r->depth_;
    r->end_element(sv(localname));
  }

  static void on_characters(void* ctx, const xmlChar* ch, int len) {
    SaxReader* r = self(ctx);
    if (r->failed_ || r->have_syntax_error_ || len <= 0) return;
    r->characters(std::string_view(reinterpret_cast<const char*>(ch), static_cast<size_t>(len)));
  }

  // --- attributes ------------------------------------------------------------

  // SAX2 attribute tuples: localname, prefix, URI, value, value end.
  struct Attribute {
    std::string_view name, uri;
    const xmlChar* begin;
    const xmlChar* end;
  };
  static Attribute attribute_at(const xmlChar** attributes, int i) {
    const xmlChar** a = attributes + 5 * i;
    return {sv(a[0]), sv(a[2]), a[3], a[4]};
  }
  // Character and predefined entity references arrive decoded, except '&',
  // which libxml2 hands over as "&#38;" when entities are not substituted;
  // no other '&' can reach here, as no entity can be declared.
  static std::string attribute_value(const Attribute& a) {
    std::string_view raw(reinterpret_cast<const char*>(a.begin), static_cast<size_t>(a.end - a.begin));
    if (raw.find('&') == std::string_view::npos) return std::string(raw);
    std::string value;
    value.reserve(raw.size());
    size_t pos = 0;
    while (true) {
      size_t amp = raw.find("&#38;", pos);
      if (amp == std::string_view::npos) break;
      value.append(raw.substr(pos, amp - pos));
      value += '&';
      pos = amp + 5;
    }
    value.append(raw.substr(pos));
    return value;
  }

  // --- elements ----------------------------------------------------------------

  void start_element(std::string_view name, std::string_view uri, int nb_attributes, const xmlChar** attributes) {
    if (div_depth_ > 0) {
      xhtml_start(name, uri, nb_attributes, attributes);
      return;
    }
    if (frames_.empty()) {
      start_root(name, uri, nb_attributes, attributes);
      return;
    }
    Frame& parent = frames_.back();
    if (parent.kind == Frame::Wrapper) {
      start_wrapped_resource(name, uri, nb_attributes, attributes);
      return;
    }
    const TypeDef* type = parent.node.type;
    const bool primitive = type->is_primitive();
    const TypeDef* chosen = nullptr;
    const ElementDef* def = (primitive && name == "value") ? nullptr : type->find_json(name, &chosen);
    if (!def || def->xml_attribute || !chosen) {
      fail(line(), "structure", "xml-unknown-element", "unknown element '" + std::string(name) + "' in " + type->name,
           name);
      return;
    }
    const bool xhtml = chosen->name == "xhtml";
    const std::string_view expected_ns = xhtml ? kXhtmlNamespace : kFhirNamespace;
    if (uri != expected_ns) {
      fail(line(), "structure", "xml-wrong-namespace",
           "element '" + std::string(name) + "' must be in the namespace " + std::string(expected_ns), name);
      return;
    }
    int index = -1;
    if (def->is_array()) {
      auto& counts = parent.item_counts;
      auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& p) { return p.first == def; });
      if (it == counts.end()) {
        counts.emplace_back(def, 1);
        index = 0;
      } else {
        index = it->second++;
      }
    } else {
      for (const Node& existing : parent.node.children)
        if (existing.def == def) {
          fail(line(), "structure", "xml-repeated-element",
               "element '" + std::string(name) + "' appears more than once but does not repeat", name);
          return;
        }
    }

    Frame f;
    f.line = line();
    f.index = index;
    f.node.def = def;
    f.node.type = chosen;
    f.node.name = json_name_of(def, chosen);
    f.step = f.node.name;
    if (xhtml) {
      f.kind = Frame::Xhtml;
      frames_.push_back(std::move(f));
      xhtml_start(name, uri, nb_attributes, attributes);
      return;
    }
    if (chosen->is_resource()) {
      f.kind = Frame::Wrapper;
      frames_.push_back(std::move(f));
      if (nb_attributes > 0)
        fail(line(), "structure", "xml-unknown-attribute",
             "attribute '" + std::string(attribute_at(attributes, 0).name) + "' is not allowed on a resource wrapper");
      return;
    }
    frames_.push_back(std::move(f));
    read_attributes(nb_attributes, attributes, false);
  }

  void start_root(std::string_view name, std::string_view uri, int nb_attributes, const xmlChar** attributes) {
    if (mode_ == Mode::DivOnly) {
      Frame f;
      f.kind = Frame::Xhtml;
      frames_.push_back(std::move(f));
      if (name != "div") {
        fail(line(), "structure", "xml-xhtml-invalid", "narrative must be a <div> element");
        return;
      }
      xhtml_start(name, uri, nb_attributes, attributes);
      return;
    }
    if (uri != kFhirNamespace) {
      fail(line(), "structure", "xml-wrong-namespace",
           "root element '" + std::string(name) + "' is not in the FHIR namespace " + std::string(kFhirNamespace));
      return;
    }
    const TypeDef* type = defs_->resource_type(name);
    if (!type) {
      fail(line(), "structure", "xml-unknown-resource-type", "unknown resource type '" + std::string(name) + "'");
      return;
    }
    Frame f;
    f.line = line();
    f.node.type = type;
    f.node.name = type->name;
    f.step = type->name;
    frames_.push_back(std::move(f));
    read_attributes(nb_attributes, attributes, true);
  }

  // <contained><Patient>...</Patient></contained>: exactly one resource inside.
  void start_wrapped_resource(std::string_view name, std::string_view uri, int nb_attributes,
                              const xmlChar** attributes) {
    Frame& wrapper = frames_.back();
    if (wrapper.has_resource) {
      fail(line(), "structure", "xml-resource-wrapper", "more than one resource inside '" +
                                                           std::string(wrapper.node.name) + "'");
      return;
    }
    if (uri != kFhirNamespace) {
      fail(line(), "structure", "xml-wrong-namespace",
           "element '" + std::string(name) + "' is not in the FHIR namespace");
      return;
    }
    const TypeDef* type = defs_->resource_type(name);
    if (!type) {
      fail(line(), "structure", "xml-unknown-resource-type", "unknown resource type '" + std::string(name) + "'");
      return;
    }
    if (!type->is_a(wrapper.node.type)) {
      fail(line(), "structure", "xml-unknown-resource-type",
           "a " + type->name + " is not allowed here (expected " + wrapper.node.type->name + ")");
      return;
    }
    Frame f;
    f.line = line();
    f.node.def = wrapper.node.def;
    f.node.name = wrapper.node.name;
    f.node.type = type;
    frames_.push_back(std::move(f));
    read_attributes(nb_attributes, attributes, false);
  }

  void read_attributes(int nb_attributes, const xmlChar** attributes, bool is_root) {
    Frame& f = frames_.back();
    const TypeDef* type = f.node.type;
    const bool primitive = type->is_primitive();
    for (int i = 0; i < nb_attributes; ++i) {
      const Attribute a = attribute_at(attributes, i);
      if (!a.uri.empty()) {
        // xsi:schemaLocation and friends on the root are schema hints, not content.
        if (is_root && a.uri == kSchemaInstanceNamespace) continue;
        fail(f.line, "structure", "xml-unknown-attribute",
             "unknown attribute '" + std::string(a.name) + "' (namespace " + std::string(a.uri) + ")");
        return;
      }
      std::string text = attribute_value(a);
      if (primitive && a.name == "value") {
        if (text.empty()) {
          fail(f.line, "value", "xml-empty-value", "attribute 'value' must not be empty");
          return;
        }
        if (!check_lexical(f.line, type, text)) return;
        f.node.value = std::move(text);
        f.node.has_value = true;
        continue;
      }
      const TypeDef* chosen = nullptr;
      const ElementDef* def = type->find_json(a.name, &chosen);
      if (!def || !def->xml_attribute) {
        fail(f.line, "structure", "xml-unknown-attribute",
             "unknown attribute '" + std::string(a.name) + "' on " + type->name);
        return;
      }
      if (text.empty()) {
        fail(f.line, "value", "xml-empty-value", "attribute '" + std::string(a.name) + "' must not be empty");
        return;
      }
      Node child;
      child.def = def;
      child.type = chosen;
      child.name = def->name;
      child.value = std::move(text);
      child.has_value = true;
      f.node.children.push_back(std::move(child));
    }
  }

  // JSON can only carry numbers and booleans in their JSON grammar, so the
  // XML text of those primitives is checked here (the rest is the validator's job).
  bool check_lexical(int at_line, const TypeDef* type, std::string_view text) {
    switch (type->json_value) {
      case JsonValueKind::Boolean:
        if (text != "true" && text != "false") {
          fail(at_line, "value", "xml-bad-value", "a boolean value must be 'true' or 'false'");
          return false;
        }
        return true;
      case JsonValueKind::Number: {
        const bool integer = type->name != "decimal";
        if (!is_json_number(text, integer)) {
          fail(at_line, "value", "xml-bad-value", "not a valid " + type->name + " value");
          return false;
        }
        if (!integer) return true;
        // Same rules as the JSON reader: 32-bit range, positiveInt >= 1, unsignedInt >= 0.
        const bool negative = text[0] == '-';
        const std::string_view digits = text.substr(negative ? 1 : 0);
        long long n = 0;
        if (digits.size() <= 10)
          for (char c : digits) n = n * 10 + (c - '0');
        if (negative) n = -n;
        if (digits.size() > 10 || n > INT32_MAX || n < INT32_MIN) {
          fail(at_line, "value", "xml-bad-value", type->name + " must be within the 32-bit range");
          return false;
        }
        if ((type->name == "positiveInt" && n < 1) || (type->name == "unsignedInt" && n < 0)) {
          fail(at_line, "value", "xml-bad-value", type->name + " value out of range");
          return false;
        }
        return true;
      }
      case JsonValueKind::String:
        return true;
    }
    return true;
  }

  void end_element(std::string_view name) {
    if (div_depth_ > 0) {
      xhtml_end(name);
      if (div_depth_ > 0) return;
      frames_.back().node.has_value = true;
      attach_finished();
      return;
    }
    Frame& f = frames_.back();
    if (f.kind == Frame::Wrapper) {
      if (!f.has_resource) {
        fail(f.line, "required", "xml-resource-wrapper", "'" + std::string(f.node.name) + "' must contain a resource");
        return;
      }
      attach_finished();
      return;
    }
    std::vector<Node>& children = f.node.children;
    // Definition order; stable so the items of one element keep document order.
    auto by_order = [](const Node& a, const Node& b) { return a.def->order < b.def->order; };
    if (!std::is_sorted(children.begin(), children.end(), by_order))
      std::stable_sort(children.begin(), children.end(), by_order);
    const TypeDef* type = f.node.type;
    if (type->is_primitive()) {
      if (!f.node.has_value && children.empty()) {
        fail(f.line, "required", "xml-missing-value",
             "element '" + std::string(name) + "' has neither a value attribute nor extensions");
        return;
      }
    } else if (!type->is_resource() && children.empty()) {
      fail(f.line, "structure", "xml-empty-element", "element '" + std::string(name) + "' has no content");
      return;
    }
    attach_finished();
  }

  // Moves the innermost frame's node into its parent (or the result).
  void attach_finished() {
    Node node = std::move(frames_.back().node);
    frames_.pop_back();
    if (frames_.empty()) {
      result_ = std::move(node);
      done_ = true;
      return;
    }
    Frame& parent = frames_.back();
    if (parent.kind == Frame::Wrapper) {
      parent.node = std::move(node);
      parent.has_resource = true;
    } else {
      parent.node.children.push_back(std::move(node));
    }
  }

  void characters(std::string_view text) {
    if (div_depth_ > 0) {
      std::string& out = frames_.back().node.value;
      if (div_tag_open_) {
        out += '>';
        div_tag_open_ = false;
      }
      append_escaped(out, text, false);
      return;
    }
    if (!all_whitespace(text)) {
      const std::string where = frames_.empty() ? std::string("the document") : frames_.back().node.type->name;
      fail(line(), "structure", "xml-unexpected-text", "text content is not allowed in " + where);
    }
  }

  // --- narrative XHTML -----------------------------------------------------------
  // Serialised as the JSON form carries it: '<div xmlns="http://www.w3.org/1999/xhtml">...</div>',
  // double-quoted attributes, empty elements as <x/>, comments and PIs dropped.

  void xhtml_start(std::string_view name, std::string_view uri, int nb_attributes, const xmlChar** attributes) {
    if (uri != kXhtmlNamespace && !(lenient_namespace && uri.empty())) {
      fail(line(), "structure", "xml-xhtml-invalid",
           "element '" + std::string(name) + "' in the narrative is not in the XHTML namespace");
      return;
    }
    std::string& out = frames_.back().node.value;
    if (div_tag_open_) out += '>';
    out += '<';
    out += name;
    if (div_depth_ == 0) {
      out += " xmlns=\"";
      out += kXhtmlNamespace;
      out += '"';
    }
    for (int i = 0; i < nb_attributes; ++i) {
      const Attribute a = attribute_at(attributes, i);
      out += ' ';
      if (!a.uri.empty()) {
        if (a.uri != kXmlNamespace) {
          fail(line(), "structure", "xml-xhtml-invalid",
               "attribute '" + std::string(a.name) + "' in the narrative has an unsupported namespace");
          return;
        }
        out += "xml:";
      }
      out += a.name;
      out += "=\"";
      append_escaped(out, attribute_value(a), true);
      out += '"';
    }
    div_tag_open_ = true;
    ++div_depth_;
  }

  void xhtml_end(std::string_view name) {
    std::string& out = frames_.back().node.value;
    if (div_tag_open_) {
      out += "/>";
      div_tag_open_ = false;
    } else {
      out += "</";
      out += name;
      out += '>';
    }
    --div_depth_;
  }
};

// ---------------------------------------------------------------------------
// Writing

class NodeToXml {
 public:
  NodeToXml(std::string& out, bool pretty) : out_(out), pretty_(pretty) {}

  void write_root(const Node& resource) {
    out_ += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
    if (pretty_) out_ += '\n';
    const std::string_view type_name = resource.type ? std::string_view(resource.type->name) : resource.name;
    out_ += '<';
    out_ += type_name;
    out_ += " xmlns=\"";
    out_ += kFhirNamespace;
    out_ += '"';
    write_attributes(resource);
    write_content(resource, type_name, 0);
    if (pretty_) out_ += '\n';
  }

 private:
  std::string& out_;
  bool pretty_;

  void indent(int depth) {
    if (!pretty_) return;
    out_ += '\n';
    out_.append(static_cast<size_t>(depth) * 2, ' ');
  }

  static bool is_attribute(const Node& n) { return n.def && n.def->xml_attribute; }

  static std::string_view element_name(const Node& n) {
    if (!n.name.empty()) return n.name;
    if (n.def) return json_name_of(n.def, n.type);
    return n.type ? std::string_view(n.type->name) : std::string_view();
  }

  void write_attributes(const Node& n) {
    for (const Node& c : n.children) {
      if (!is_attribute(c)) continue;
      out_ += ' ';
      out_ += element_name(c);
      out_ += "=\"";
      append_escaped(out_, c.value, true);
      out_ += '"';
    }
  }

  // The open tag of `n` has been written up to its attributes; finishes it.
  void write_content(const Node& n, std::string_view tag, int depth) {
    bool any_element = false;
    for (const Node& c : n.children) {
      if (is_attribute(c)) continue;
      if (!any_element) {
        out_ += '>';
        any_element = true;
      }
      write_element(c, depth + 1);
    }
    if (!any_element) {
      out_ += "/>";
      return;
    }
    indent(depth);
    out_ += "</";
    out_ += tag;
    out_ += '>';
  }

  void write_element(const Node& n, int depth) {
    const std::string_view name = element_name(n);
    indent(depth);
    if (n.type && n.type->name == "xhtml") {
      write_div(n.value);
      return;
    }
    out_ += '<';
    out_ += name;
    if (n.is_resource()) {
      out_ += '>';
      indent(depth + 1);
      out_ += '<';
      out_ += n.type->name;
      write_attributes(n);
      write_content(n, n.type->name, depth + 1);
      indent(depth);
      out_ += "</";
      out_ += name;
      out_ += '>';
      return;
    }
    write_attributes(n);
    if (n.is_primitive() && n.has_value) {
      out_ += " value=\"";
      append_escaped(out_, n.value, true);
      out_ += '"';
    }
    write_content(n, name, depth);
  }

  // The div text is re-read with the hardened parser and re-serialized, so a
  // malformed or hostile value (e.g. one closing the <div> early) can never
  // change the structure of the document written around it.
  void write_div(const std::string& text) {
    SaxReader reader(nullptr, SaxReader::Mode::DivOnly, kMaxDivDepth);
    reader.lenient_namespace = true;
    if (reader.run(text)) {
      out_ += reader.take_div();
      return;
    }
    // Not well-formed XHTML: keep the content visible as text rather than lose it.
    out_ += "<div xmlns=\"";
    out_ += kXhtmlNamespace;
    out_ += "\">";
    append_escaped(out_, text, false);
    out_ += "</div>";
  }
};

}  // namespace

Status parse_xml(const Definitions& defs, std::string_view text, Node* out, const ParseLimits& limits) {
  if (text.size() > limits.max_bytes)
    return Status::error(ErrorCategory::TooLarge,
                         make_issue("too-long", "xml-too-large",
                                    "XML document is larger than " + std::to_string(limits.max_bytes) + " bytes",
                                    "", 0));
  SaxReader reader(&defs, SaxReader::Mode::Resource, limits.max_depth);
  Status st = reader.run(text);
  if (!st) return st;
  *out = reader.take_resource();
  return Status::ok();
}

Status check_xhtml_div(std::string_view div, std::string* normalised, const ParseLimits& limits) {
  if (div.size() > limits.max_bytes)
    return Status::error(ErrorCategory::TooLarge,
                         make_issue("too-long", "xml-too-large", "narrative is larger than " +
                                                                     std::to_string(limits.max_bytes) + " bytes",
                                    "", 0));
  SaxReader reader(nullptr, SaxReader::Mode::DivOnly, limits.max_depth);
  Status st = reader.run(div);
  if (st && normalised) *normalised = reader.take_div();
  return st;
}

std::string write_xml(const Node& resource, const XmlWriteOptions& opts) {
  std::string out;
  out.reserve(4096);
  NodeToXml writer(out, opts.pretty);
  writer.write_root(resource);
  return out;
}

}  // namespace espace::fhir
