// The one hardened libxml2 SAX set-up, for every XML reader of ours (FHIR
// XML, CDA R2): no entity substitution, no DTD loading or validation, no
// network, no tree; a DOCTYPE reaches `doctype` before anything it declares
// is read, so the caller refuses it there (XXE, entity expansion).
#pragma once

#include <libxml/parser.h>

#include <string_view>

namespace espace::fhir {

struct SaxCallbacks {
  startElementNsSAX2Func start = nullptr;
  endElementNsSAX2Func end = nullptr;
  charactersSAXFunc characters = nullptr;  // also receives ignorable whitespace
  internalSubsetSAXFunc doctype = nullptr; // internal and external subsets alike
  xmlStructuredErrorFunc error = nullptr;
};

// A parser context over `text` (which must outlive it) calling only
// `callbacks`, with `user` in ctxt->_private. Precondition: text.size() <=
// INT_MAX. Null when libxml2 cannot make one. Free with xmlFreeParserCtxt.
xmlParserCtxtPtr make_hardened_sax_context(std::string_view text, const SaxCallbacks& callbacks, void* user);

}  // namespace espace::fhir
