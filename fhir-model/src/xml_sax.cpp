#include "espace/fhir/xml_sax.h"

#include <libxml/parserInternals.h>

#include <cstring>
#include <mutex>

namespace espace::fhir {

xmlParserCtxtPtr make_hardened_sax_context(std::string_view text, const SaxCallbacks& callbacks, void* user) {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
  xmlParserCtxtPtr ctxt = xmlCreateMemoryParserCtxt(text.data(), static_cast<int>(text.size()));
  if (!ctxt) return nullptr;
  // Never XML_PARSE_NOENT (entity substitution), XML_PARSE_DTDLOAD,
  // XML_PARSE_DTDATTR or XML_PARSE_HUGE.
  xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  ctxt->replaceEntities = 0;
  ctxt->loadsubset = 0;
  ctxt->validate = 0;
  ctxt->_private = user;
  // Only the caller's callbacks: nothing builds a tree, nothing resolves entities.
  xmlSAXHandler* sax = ctxt->sax;
  std::memset(sax, 0, sizeof *sax);
  sax->initialized = XML_SAX2_MAGIC;
  sax->internalSubset = callbacks.doctype;
  sax->externalSubset = callbacks.doctype;
  sax->startElementNs = callbacks.start;
  sax->endElementNs = callbacks.end;
  sax->characters = callbacks.characters;
  sax->ignorableWhitespace = callbacks.characters;
  sax->serror = callbacks.error;
  return ctxt;
}

}  // namespace espace::fhir
