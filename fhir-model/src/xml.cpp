// FHIR XML (hl7.org/fhir/R4/xml.html) <-> Node.
//
// Reading: libxml2 builds a DOM from memory with a hardened parser context
// (no DTD, no entities, no network; a DOCTYPE stops the parse as soon as it
// is seen; element depth is checked while parsing), then the DOM is walked
// against the Definitions. Writing appends straight to a std::string.
#include "espace/fhir/xml.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>

namespace espace::fhir {
namespace {

constexpr std::string_view kFhirNamespace = "http://hl7.org/fhir";
constexpr std::string_view kXhtmlNamespace = "http://www.w3.org/1999/xhtml";
constexpr std::string_view kXmlNamespace = "http://www.w3.org/XML/1998/namespace";
constexpr std::string_view kSchemaInstanceNamespace = "http://www.w3.org/2001/XMLSchema-instance";

std::string_view sv(const xmlChar* s) {
  return s ? std::string_view(reinterpret_cast<const char*>(s)) : std::string_view();
}

std::string_view namespace_of(const xmlNode* n) { return n->ns ? sv(n->ns->href) : std::string_view(); }

void init_libxml() {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
}

bool is_xml_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool all_whitespace(std::string_view s) {
  for (char c : s)
    if (!is_xml_space(c)) return false;
  return true;
}

int line_of(const xmlNode* n) {
  if (!n) return 0;
  long line = xmlGetLineNo(n);
  return line > 0 && line < INT_MAX ? static_cast<int>(line) : 0;
}

// Text of an attribute: without entity substitution it is a list of text nodes.
std::string attribute_text(const xmlAttr* a) {
  std::string text;
  for (const xmlNode* c = a->children; c; c = c->next)
    if (c->content) text += sv(c->content);
  return text;
}

// ---------------------------------------------------------------------------
// Hardened parsing

// State shared with the SAX hooks through ctxt->_private.
struct ParseGuard {
  int depth = 0;
  int max_depth = 0;
  bool doctype_seen = false;
  bool too_deep = false;
  int stop_line = 0;
  bool have_error = false;
  std::string first_error;
  int error_line = 0;
  int error_column = 0;
  startElementNsSAX2Func start_element = nullptr;
  endElementNsSAX2Func end_element = nullptr;
};

ParseGuard* guard_of(void* ctx) {
  return static_cast<ParseGuard*>(static_cast<xmlParserCtxtPtr>(ctx)->_private);
}

// Called when "<!DOCTYPE name ..." has been read and before any internal
// subset is parsed: nothing declared in it is ever looked at.
void refuse_doctype(void* ctx, const xmlChar*, const xmlChar*, const xmlChar*) {
  auto* ctxt = static_cast<xmlParserCtxtPtr>(ctx);
  ParseGuard* g = guard_of(ctx);
  g->doctype_seen = true;
  g->stop_line = ctxt->input ? ctxt->input->line : 0;
  xmlStopParser(ctxt);
}

void start_element_checked(void* ctx, const xmlChar* localname, const xmlChar* prefix, const xmlChar* uri,
                           int nb_namespaces, const xmlChar** namespaces, int nb_attributes, int nb_defaulted,
                           const xmlChar** attributes) {
  auto* ctxt = static_cast<xmlParserCtxtPtr>(ctx);
  ParseGuard* g = guard_of(ctx);
  if (++g->depth > g->max_depth) {
    g->too_deep = true;
    g->stop_line = ctxt->input ? ctxt->input->line : 0;
    xmlStopParser(ctxt);
    return;
  }
  g->start_element(ctx, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes, nb_defaulted,
                   attributes);
}

void end_element_checked(void* ctx, const xmlChar* localname, const xmlChar* prefix, const xmlChar* uri) {
  ParseGuard* g = guard_of(ctx);
  --g->depth;
  g->end_element(ctx, localname, prefix, uri);
}

// Per-context error sink: keeps libxml2 quiet on stderr without touching its
// global (per-thread) handlers, and remembers the first error.
void collect_error(void* ctx, xmlErrorPtr error) {
  if (!ctx || !error || error->level < XML_ERR_ERROR) return;
  ParseGuard* g = guard_of(ctx);
  if (g->have_error) return;
  g->have_error = true;
  g->first_error = error->message ? error->message : "malformed XML";
  while (!g->first_error.empty() && is_xml_space(g->first_error.back())) g->first_error.pop_back();
  g->error_line = error->line;
  g->error_column = error->int2;
}

struct DocDeleter {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using DocPtr = std::unique_ptr<xmlDoc, DocDeleter>;

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

// Parses `text` into a DOM, or explains why not.
Status parse_document(std::string_view text, int max_depth, DocPtr* out) {
  init_libxml();
  if (text.size() > static_cast<size_t>(INT_MAX))
    return Status::error(ErrorCategory::TooLarge,
                         make_issue("too-long", "xml-too-large", "XML document is too large", "", 0));
  xmlParserCtxtPtr ctxt = xmlCreateMemoryParserCtxt(text.data(), static_cast<int>(text.size()));
  if (!ctxt)
    return Status::error(ErrorCategory::Internal,
                         make_issue("exception", "xml-parser-unavailable", "could not create an XML parser", "", 0));
  // No XML_PARSE_NOENT (entity substitution), XML_PARSE_DTDLOAD, XML_PARSE_DTDATTR,
  // XML_PARSE_HUGE: the hooks below refuse any DTD before it is read anyway.
  xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_BIG_LINES | XML_PARSE_NOERROR |
                              XML_PARSE_NOWARNING);
  ctxt->replaceEntities = 0;
  ctxt->loadsubset = 0;
  ctxt->validate = 0;
  ParseGuard guard;
  guard.max_depth = max_depth;
  guard.start_element = ctxt->sax->startElementNs;
  guard.end_element = ctxt->sax->endElementNs;
  ctxt->_private = &guard;
  ctxt->sax->internalSubset = refuse_doctype;
  ctxt->sax->externalSubset = refuse_doctype;
  ctxt->sax->startElementNs = start_element_checked;
  ctxt->sax->endElementNs = end_element_checked;
  ctxt->sax->serror = collect_error;
  ctxt->sax->warning = nullptr;
  ctxt->sax->error = nullptr;
  ctxt->sax->fatalError = nullptr;

  xmlParseDocument(ctxt);
  DocPtr doc(ctxt->myDoc);
  ctxt->myDoc = nullptr;
  bool well_formed = ctxt->wellFormed != 0;
  xmlFreeParserCtxt(ctxt);

  if (guard.doctype_seen)
    return Status::error(ErrorCategory::Invalid,
                         make_issue("not-supported", "xml-doctype-forbidden",
                                    "XML documents with a DOCTYPE (DTD) are not accepted", "", guard.stop_line));
  if (guard.too_deep)
    return Status::error(ErrorCategory::Invalid,
                         make_issue("too-costly", "xml-too-deep",
                                    "XML elements are nested more than " + std::to_string(max_depth) + " deep", "",
                                    guard.stop_line));
  if (!well_formed || guard.have_error || !doc) {
    Issue i = make_issue("structure", "xml-malformed",
                         "XML is not well-formed: " + (guard.have_error ? guard.first_error : std::string("unknown")),
                         "", guard.error_line);
    i.column = guard.error_column;
    return Status::error(ErrorCategory::Invalid, std::move(i));
  }
  *out = std::move(doc);
  return Status::ok();
}

// ---------------------------------------------------------------------------
// Escaping (shared by the writer and the XHTML serializer)

// Appends `s` escaped for XML. Invalid UTF-8 and characters XML 1.0 cannot
// carry (most C0 controls, U+FFFE/U+FFFF) become U+FFFD so the output is
// always well-formed.
void append_escaped(std::string& out, std::string_view s, bool attribute) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"':
          if (attribute) out += "&quot;";
          else out += '"';
          break;
        case '\n':
          if (attribute) out += "&#10;";
          else out += '\n';
          break;
        case '\t':
          if (attribute) out += "&#9;";
          else out += '\t';
          break;
        case '\r': out += "&#13;"; break;  // a raw CR would be normalised away on reading
        default:
          if (c < 0x20) out += kReplacement;
          else out += static_cast<char>(c);
      }
      ++p;
      continue;
    }
    // Multi-byte UTF-8: validate length, continuation bytes, overlongs, surrogates.
    int length = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) { length = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { length = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { length = 4; cp = c & 0x07; }
    bool ok = length > 0 && end - p >= length;
    for (int k = 1; ok && k < length; ++k) {
      if ((p[k] & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (p[k] & 0x3F);
    }
    if (ok) {
      if ((length == 3 && cp < 0x800) || (length == 4 && (cp < 0x10000 || cp > 0x10FFFF))) ok = false;
      if (cp >= 0xD800 && cp <= 0xDFFF) ok = false;
      if (cp == 0xFFFE || cp == 0xFFFF) ok = false;
    }
    if (ok) {
      out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(length));
      p += length;
    } else {
      out += kReplacement;
      ++p;
    }
  }
}

// ---------------------------------------------------------------------------
// XHTML (Narrative.div) serialization: the same text the JSON form carries,
// '<div xmlns="http://www.w3.org/1999/xhtml">...</div>', double-quoted
// attributes, empty elements as <x/>, comments and PIs dropped.

struct XhtmlProblem {
  const xmlNode* where = nullptr;
  std::string what;
};

// `lenient_namespace` accepts elements without namespace as XHTML (used on
// write, for a div that came from JSON without its xmlns).
bool serialize_xhtml_element(const xmlNode* el, bool is_root, bool lenient_namespace, std::string& out,
                             XhtmlProblem* problem) {
  const std::string_view ns = namespace_of(el);
  if (ns != kXhtmlNamespace && !(lenient_namespace && ns.empty())) {
    problem->where = el;
    problem->what = "element '" + std::string(sv(el->name)) + "' in the narrative is not in the XHTML namespace";
    return false;
  }
  out += '<';
  out += sv(el->name);
  if (is_root) {
    out += " xmlns=\"";
    out += kXhtmlNamespace;
    out += '"';
  }
  for (const xmlAttr* a = el->properties; a; a = a->next) {
    out += ' ';
    if (a->ns) {
      if (sv(a->ns->href) != kXmlNamespace) {
        problem->where = el;
        problem->what = "attribute '" + std::string(sv(a->name)) + "' in the narrative has an unsupported namespace";
        return false;
      }
      out += "xml:";
    }
    out += sv(a->name);
    out += "=\"";
    append_escaped(out, attribute_text(a), true);
    out += '"';
  }
  if (!el->children) {
    out += "/>";
    return true;
  }
  out += '>';
  for (const xmlNode* c = el->children; c; c = c->next) {
    switch (c->type) {
      case XML_ELEMENT_NODE:
        if (!serialize_xhtml_element(c, false, lenient_namespace, out, problem)) return false;
        break;
      case XML_TEXT_NODE:
      case XML_CDATA_SECTION_NODE:
        append_escaped(out, sv(c->content), false);
        break;
      case XML_COMMENT_NODE:
      case XML_PI_NODE:
        break;
      default:
        problem->where = c;
        problem->what = "unsupported XML node in the narrative";
        return false;
    }
  }
  out += "</";
  out += sv(el->name);
  out += '>';
  return true;
}

// ---------------------------------------------------------------------------
// Reading

const TypeDef* xhtml_type_marker(const TypeDef* t) { return t && t->name == "xhtml" ? t : nullptr; }

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

class XmlToNode {
 public:
  explicit XmlToNode(const Definitions& defs) : defs_(defs) {}

  Status read_root(const xmlNode* root, Node* out) {
    if (namespace_of(root) != kFhirNamespace) {
      fail(root, "structure", "xml-wrong-namespace",
           "root element '" + std::string(sv(root->name)) + "' is not in the FHIR namespace " +
               std::string(kFhirNamespace));
      return std::move(status_);
    }
    const TypeDef* type = defs_.resource_type(sv(root->name));
    if (!type) {
      fail(root, "structure", "xml-unknown-resource-type",
           "unknown resource type '" + std::string(sv(root->name)) + "'");
      return std::move(status_);
    }
    *out = Node();
    out->type = type;
    out->name = type->name;
    path_.push_back({type->name, -1});
    fill(root, *out, /*is_root=*/true);
    return std::move(status_);
  }

 private:
  struct Step {
    std::string_view name;
    int index;  // -1 when the element does not repeat
  };

  const Definitions& defs_;
  std::vector<Step> path_;
  Status status_;
  bool failed_ = false;

  std::string path_text() const {
    std::string p;
    for (const Step& s : path_) {
      if (!p.empty()) p += '.';
      p += s.name;
      if (s.index >= 0) {
        p += '[';
        p += std::to_string(s.index);
        p += ']';
      }
    }
    return p;
  }

  void fail(const xmlNode* at, std::string code, std::string message_id, std::string diagnostics) {
    if (failed_) return;
    failed_ = true;
    status_ = Status::error(ErrorCategory::Invalid,
                            make_issue(std::move(code), std::move(message_id),
                                       std::move(diagnostics) + " (line " + std::to_string(line_of(at)) + ")",
                                       path_text(), line_of(at)));
  }

  // Reads the attributes and child elements of `el` into `node`, whose type is set.
  bool fill(const xmlNode* el, Node& node, bool is_root) {
    const TypeDef* type = node.type;
    const bool primitive = type->is_primitive();

    for (const xmlAttr* a = el->properties; a; a = a->next) {
      const std::string_view name = sv(a->name);
      if (a->ns) {
        // xsi:schemaLocation and friends on the root are schema hints, not content.
        if (is_root && sv(a->ns->href) == kSchemaInstanceNamespace) continue;
        fail(el, "structure", "xml-unknown-attribute",
             "unknown attribute '" + std::string(name) + "' (namespace " + std::string(sv(a->ns->href)) + ")");
        return false;
      }
      std::string text = attribute_text(a);
      if (primitive && name == "value") {
        if (text.empty()) {
          fail(el, "value", "xml-empty-value", "attribute 'value' must not be empty");
          return false;
        }
        if (!check_lexical(el, type, text)) return false;
        node.value = std::move(text);
        node.has_value = true;
        continue;
      }
      const TypeDef* chosen = nullptr;
      const ElementDef* def = type->find_json(name, &chosen);
      if (!def || !def->xml_attribute) {
        fail(el, "structure", "xml-unknown-attribute",
             "unknown attribute '" + std::string(name) + "' on " + type->name);
        return false;
      }
      if (text.empty()) {
        fail(el, "value", "xml-empty-value", "attribute '" + std::string(name) + "' must not be empty");
        return false;
      }
      Node child;
      child.def = def;
      child.type = chosen;
      child.name = def->name;
      child.value = std::move(text);
      child.has_value = true;
      node.children.push_back(std::move(child));
    }

    // Index of the next item per repeating element, for error locations.
    std::vector<std::pair<const ElementDef*, int>> counts;
    for (const xmlNode* c = el->children; c; c = c->next) {
      switch (c->type) {
        case XML_ELEMENT_NODE:
          break;
        case XML_TEXT_NODE:
        case XML_CDATA_SECTION_NODE:
          if (!all_whitespace(sv(c->content))) {
            fail(c, "structure", "xml-unexpected-text", "text content is not allowed in " + type->name);
            return false;
          }
          continue;
        case XML_COMMENT_NODE:
        case XML_PI_NODE:
          continue;
        default:
          fail(c, "structure", "xml-unexpected-node", "unsupported XML node in " + type->name);
          return false;
      }
      const std::string_view name = sv(c->name);
      const TypeDef* chosen = nullptr;
      const ElementDef* def = (primitive && name == "value") ? nullptr : type->find_json(name, &chosen);
      if (!def || def->xml_attribute || !chosen) {
        path_.push_back({name, -1});
        fail(c, "structure", "xml-unknown-element",
             "unknown element '" + std::string(name) + "' in " + type->name);
        return false;
      }
      const bool xhtml = xhtml_type_marker(chosen) != nullptr;
      const std::string_view expected_ns = xhtml ? kXhtmlNamespace : kFhirNamespace;
      if (namespace_of(c) != expected_ns) {
        path_.push_back({name, -1});
        fail(c, "structure", "xml-wrong-namespace",
             "element '" + std::string(name) + "' must be in the namespace " + std::string(expected_ns));
        return false;
      }
      int index = -1;
      if (def->is_array()) {
        auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& p) { return p.first == def; });
        if (it == counts.end()) {
          counts.emplace_back(def, 1);
          index = 0;
        } else {
          index = it->second++;
        }
      } else {
        for (const Node& existing : node.children)
          if (existing.def == def) {
            path_.push_back({name, -1});
            fail(c, "structure", "xml-repeated-element",
                 "element '" + std::string(name) + "' appears more than once but does not repeat");
            return false;
          }
      }

      Node child;
      child.def = def;
      child.type = chosen;
      child.name = json_name_of(def, chosen);
      path_.push_back({child.name, index});
      bool ok;
      if (xhtml) ok = read_xhtml(c, child);
      else if (chosen->is_resource()) ok = read_wrapped_resource(c, child);
      else ok = fill(c, child, false);
      if (!ok) return false;
      path_.pop_back();
      node.children.push_back(std::move(child));
    }

    // Definition order; stable so the items of one element keep document order.
    if (!std::is_sorted(node.children.begin(), node.children.end(),
                        [](const Node& a, const Node& b) { return a.def->order < b.def->order; }))
      std::stable_sort(node.children.begin(), node.children.end(),
                       [](const Node& a, const Node& b) { return a.def->order < b.def->order; });

    if (primitive) {
      if (!node.has_value && node.children.empty()) {
        fail(el, "required", "xml-missing-value",
             "element '" + std::string(sv(el->name)) + "' has neither a value attribute nor extensions");
        return false;
      }
    } else if (!type->is_resource() && node.children.empty()) {
      fail(el, "structure", "xml-empty-element", "element '" + std::string(sv(el->name)) + "' has no content");
      return false;
    }
    return true;
  }

  bool check_lexical(const xmlNode* el, const TypeDef* type, std::string_view text) {
    switch (type->json_value) {
      case JsonValueKind::Boolean:
        if (text != "true" && text != "false") {
          fail(el, "value", "xml-bad-value", "a boolean value must be 'true' or 'false'");
          return false;
        }
        return true;
      case JsonValueKind::Number:
        if (!is_json_number(text, type->name != "decimal")) {
          fail(el, "value", "xml-bad-value", "not a valid " + type->name + " value");
          return false;
        }
        return true;
      case JsonValueKind::String:
        return true;
    }
    return true;
  }

  // <contained><Patient>...</Patient></contained>: exactly one resource inside.
  bool read_wrapped_resource(const xmlNode* wrapper, Node& node) {
    if (wrapper->properties) {
      fail(wrapper, "structure", "xml-unknown-attribute",
           "attribute '" + std::string(sv(wrapper->properties->name)) + "' is not allowed on a resource wrapper");
      return false;
    }
    const xmlNode* inner = nullptr;
    for (const xmlNode* c = wrapper->children; c; c = c->next) {
      if (c->type == XML_ELEMENT_NODE) {
        if (inner) {
          fail(c, "structure", "xml-resource-wrapper", "more than one resource inside '" +
                                                           std::string(sv(wrapper->name)) + "'");
          return false;
        }
        inner = c;
      } else if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) &&
                 !all_whitespace(sv(c->content))) {
        fail(c, "structure", "xml-unexpected-text", "text content is not allowed around a resource");
        return false;
      } else if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE && c->type != XML_COMMENT_NODE &&
                 c->type != XML_PI_NODE) {
        fail(c, "structure", "xml-unexpected-node", "unsupported XML node around a resource");
        return false;
      }
    }
    if (!inner) {
      fail(wrapper, "required", "xml-resource-wrapper",
           "'" + std::string(sv(wrapper->name)) + "' must contain a resource");
      return false;
    }
    if (namespace_of(inner) != kFhirNamespace) {
      fail(inner, "structure", "xml-wrong-namespace",
           "element '" + std::string(sv(inner->name)) + "' is not in the FHIR namespace");
      return false;
    }
    const TypeDef* type = defs_.resource_type(sv(inner->name));
    if (!type) {
      fail(inner, "structure", "xml-unknown-resource-type",
           "unknown resource type '" + std::string(sv(inner->name)) + "'");
      return false;
    }
    if (!type->is_a(node.type)) {
      fail(inner, "structure", "xml-unknown-resource-type",
           "a " + type->name + " is not allowed here (expected " + node.type->name + ")");
      return false;
    }
    node.type = type;
    return fill(inner, node, false);
  }

  bool read_xhtml(const xmlNode* div, Node& node) {
    if (sv(div->name) != "div") {
      fail(div, "structure", "xml-xhtml-invalid", "narrative must be a <div> element");
      return false;
    }
    XhtmlProblem problem;
    if (!serialize_xhtml_element(div, true, false, node.value, &problem)) {
      fail(problem.where ? problem.where : div, "structure", "xml-xhtml-invalid", problem.what);
      return false;
    }
    node.has_value = true;
    return true;
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
    DocPtr doc;
    XhtmlProblem problem;
    if (parse_document(text, 256, &doc)) {
      const xmlNode* root = xmlDocGetRootElement(doc.get());
      const size_t mark = out_.size();
      if (root && sv(root->name) == "div" && serialize_xhtml_element(root, true, true, out_, &problem)) return;
      out_.resize(mark);
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
  DocPtr doc;
  Status st = parse_document(text, limits.max_depth, &doc);
  if (!st) return st;
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (!root)
    return Status::error(ErrorCategory::Invalid,
                         make_issue("structure", "xml-malformed", "XML document has no root element", "", 0));
  XmlToNode reader(defs);
  return reader.read_root(root, out);
}

std::string write_xml(const Node& resource, const XmlWriteOptions& opts) {
  std::string out;
  out.reserve(4096);
  NodeToXml writer(out, opts.pretty);
  writer.write_root(resource);
  return out;
}

}  // namespace espace::fhir
