// Search request -> storage::SearchQuery: parameter names, modifiers,
// prefixes and values per hl7.org/fhir/R4/search.html, checked against the
// SearchParameter registry.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "espace/interactions/api.h"
#include "espace/terminology/terminology.h"
#include "registry.h"

namespace espace::interactions::search {

using fhir::Status;

enum class TotalMode { Default, None, Estimate, Accurate };
enum class SummaryMode { None, True, Text, Data, Count, False };

struct ParsedSearch {
  storage::SearchQuery query;
  // Parameters applied, in request order (the self link shows these).
  std::vector<std::pair<std::string, std::string>> used;
  // Parameters ignored under Prefer: handling=lenient, with the reason.
  std::vector<std::string> ignored;
  int count = 0;
  TotalMode total = TotalMode::Default;
  SummaryMode summary = SummaryMode::None;
  std::vector<std::string> elements;  // _elements (top-level element names)
};

struct ParseContext {
  const Registry* registry = nullptr;
  const fhir::Definitions* defs = nullptr;
  std::string base_url;  // absolute references to this server are read as Type/id
  bool lenient = false;
  Limits limits;
  // ValueSets for the token modifiers :in and :not-in (null: refused as not supported).
  const terminology::Store* terminology = nullptr;
};

// `type` empty for a system-level search. Paging parameters (_offset,
// _after) are the server's own, produced by its next/prev links.
Status parse_search(const ParseContext& ctx, const std::string& type,
                    const std::vector<std::pair<std::string, std::string>>& params, ParsedSearch* out);

// Condition restricting a search to the compartment compartment_type/id,
// for resources of `type` (empty: every member type; `types` then receives them).
Status compartment_condition(const Registry& registry, const std::string& compartment_type,
                             const std::string& compartment_id, const std::string& type,
                             storage::Condition* out, std::vector<std::string>* types);

}  // namespace espace::interactions::search
