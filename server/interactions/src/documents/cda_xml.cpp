// CDA R2 reading with libxml2's SAX2 parser; see cda_xml.h.
#include "cda_xml.h"

#include <libxml/parser.h>
#include <libxml/xmlerror.h>

#include <climits>

#include "espace/fhir/xml_sax.h"

namespace espace::interactions::cda {
namespace {

using fhir::ErrorCategory;
using fhir::Issue;
using fhir::Status;

constexpr std::string_view kSchemaInstanceNamespace = "http://www.w3.org/2001/XMLSchema-instance";
constexpr std::string_view kXmlNamespace = "http://www.w3.org/XML/1998/namespace";

std::string_view sv(const xmlChar* s) {
  return s ? std::string_view(reinterpret_cast<const char*>(s)) : std::string_view();
}

Issue make_issue(std::string code, std::string message_id, std::string diagnostics, int line) {
  Issue i;
  i.code = std::move(code);
  i.message_id = std::move(message_id);
  i.diagnostics = std::move(diagnostics);
  i.line = line;
  return i;
}

class TreeBuilder {
 public:
  explicit TreeBuilder(const XmlLimits& limits) : limits_(limits) {}

  Status run(std::string_view text, std::unique_ptr<XmlElement>* root) {
    if (text.size() > limits_.max_bytes || text.size() > static_cast<size_t>(INT_MAX))
      return Status::error(ErrorCategory::TooLarge,
                           make_issue("too-long", "cda-xml-too-large",
                                      "the CDA document is larger than " + std::to_string(limits_.max_bytes) +
                                          " bytes",
                                      0));
    if (text.empty())
      return Status::error(ErrorCategory::Invalid,
                           make_issue("structure", "cda-xml-malformed", "the CDA document is empty", 0));
    ctxt_ = fhir::make_hardened_sax_context(text, {on_start, on_end, on_characters, on_doctype, on_error}, this);
    if (!ctxt_)
      return Status::error(ErrorCategory::Internal,
                           make_issue("exception", "cda-xml-parser-unavailable", "could not create an XML parser", 0));

    xmlParseDocument(ctxt_);
    const bool well_formed = ctxt_->wellFormed != 0;
    if (ctxt_->myDoc) xmlFreeDoc(ctxt_->myDoc);
    ctxt_->myDoc = nullptr;
    xmlFreeParserCtxt(ctxt_);
    ctxt_ = nullptr;

    if (failed_) return std::move(status_);
    if (!well_formed || syntax_error_ || !root_) {
      std::string why = syntax_error_ ? syntax_message_ : std::string("no root element");
      return Status::error(ErrorCategory::Invalid,
                           make_issue("structure", "cda-xml-malformed", "the CDA document is not well-formed XML: " + why,
                                      syntax_line_));
    }
    if (root_->name != "ClinicalDocument" || !root_->in_hl7)
      return Status::error(ErrorCategory::Invalid,
                           make_issue("structure", "cda-xml-not-cda",
                                      "the root element must be ClinicalDocument in the namespace urn:hl7-org:v3", 1));
    *root = std::move(root_);
    return Status::ok();
  }

 private:
  const XmlLimits& limits_;
  xmlParserCtxtPtr ctxt_ = nullptr;
  std::unique_ptr<XmlElement> root_;
  XmlElement* current_ = nullptr;
  int depth_ = 0;
  size_t elements_ = 0;
  bool failed_ = false;
  Status status_;
  bool syntax_error_ = false;
  std::string syntax_message_;
  int syntax_line_ = 0;

  static TreeBuilder* self(void* ctx) { return static_cast<TreeBuilder*>(static_cast<xmlParserCtxtPtr>(ctx)->_private); }
  int line() const { return ctxt_ && ctxt_->input ? ctxt_->input->line : 0; }

  void fail(ErrorCategory category, std::string code, std::string message_id, std::string diagnostics) {
    if (failed_) return;
    failed_ = true;
    status_ = Status::error(category, make_issue(std::move(code), std::move(message_id), std::move(diagnostics), line()));
    if (ctxt_) xmlStopParser(ctxt_);
  }

  // A DOCTYPE is where XXE and entity expansion attacks start: refuse it
  // before anything it declares is read.
  static void on_doctype(void* ctx, const xmlChar*, const xmlChar*, const xmlChar*) {
    TreeBuilder* b = self(ctx);
    if (b->syntax_error_) return;
    b->fail(ErrorCategory::Invalid, "security", "cda-xml-doctype",
            "XML documents with a DOCTYPE (DTD) are not accepted");
  }

  static void on_error(void* ctx, xmlErrorPtr error) {
    if (!ctx || !error || error->level < XML_ERR_ERROR) return;
    TreeBuilder* b = self(ctx);
    if (b->failed_ || b->syntax_error_) return;
    b->syntax_error_ = true;
    b->syntax_message_ = error->message ? error->message : "malformed XML";
    while (!b->syntax_message_.empty() &&
           (b->syntax_message_.back() == '\n' || b->syntax_message_.back() == ' '))
      b->syntax_message_.pop_back();
    b->syntax_line_ = error->line;
    if (b->ctxt_) xmlStopParser(b->ctxt_);
  }

  static void on_start(void* ctx, const xmlChar* localname, const xmlChar*, const xmlChar* uri, int,
                       const xmlChar**, int nb_attributes, int, const xmlChar** attributes) {
    TreeBuilder* b = self(ctx);
    if (b->failed_ || b->syntax_error_) return;
    if (++b->depth_ > b->limits_.max_depth) {
      b->fail(ErrorCategory::Invalid, "too-costly", "cda-xml-too-deep",
              "XML elements are nested more than " + std::to_string(b->limits_.max_depth) + " deep");
      return;
    }
    if (++b->elements_ > b->limits_.max_elements) {
      b->fail(ErrorCategory::Invalid, "too-costly", "cda-xml-too-many-elements",
              "the CDA document has more than " + std::to_string(b->limits_.max_elements) + " elements");
      return;
    }
    auto element = std::make_unique<XmlElement>();
    element->name = sv(localname);
    element->in_hl7 = sv(uri) == kHl7Namespace;
    element->line = b->line();
    for (int i = 0; i < nb_attributes; ++i) {
      const xmlChar** a = attributes + 5 * i;  // localname, prefix, URI, value, value end
      std::string_view name = sv(a[0]), ns = sv(a[2]);
      std::string value(reinterpret_cast<const char*>(a[3]), static_cast<size_t>(a[4] - a[3]));
      if (ns.empty())
        element->attributes.emplace_back(std::string(name), std::move(value));
      else if (ns == kSchemaInstanceNamespace)
        element->attributes.emplace_back("xsi:" + std::string(name), std::move(value));
      else if (ns == kXmlNamespace)
        element->attributes.emplace_back("xml:" + std::string(name), std::move(value));
    }
    XmlElement* raw = element.get();
    if (b->current_) {
      element->parent = b->current_;
      b->current_->children.push_back(std::move(element));
    } else {
      b->root_ = std::move(element);
    }
    b->current_ = raw;
  }

  static void on_end(void* ctx, const xmlChar*, const xmlChar*, const xmlChar*) {
    TreeBuilder* b = self(ctx);
    if (b->failed_ || b->syntax_error_ || !b->current_) return;
    --b->depth_;
    b->current_ = const_cast<XmlElement*>(b->current_->parent);
  }

  static void on_characters(void* ctx, const xmlChar* ch, int len) {
    TreeBuilder* b = self(ctx);
    if (b->failed_ || b->syntax_error_ || !b->current_ || len <= 0) return;
    b->current_->text.append(reinterpret_cast<const char*>(ch), static_cast<size_t>(len));
  }
};

}  // namespace

fhir::Status parse_cda_xml(std::string_view text, std::unique_ptr<XmlElement>* root, const XmlLimits& limits) {
  TreeBuilder builder(limits);
  return builder.run(text, root);
}

}  // namespace espace::interactions::cda
