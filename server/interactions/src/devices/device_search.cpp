#include "device_search.h"

#include "../common.h"
#include "../search/query.h"
#include "../search/registry.h"

namespace espace::interactions::devices {

fhir::Status search_all(storage::Storage& store, const fhir::Definitions& defs, const std::string& type,
                        const std::vector<std::pair<std::string, std::string>>& params,
                        std::vector<storage::ResourceVersion>* out) {
  search::ParseContext ctx;
  ctx.registry = &search::Registry::get(defs);
  ctx.defs = &defs;
  search::ParsedSearch parsed;
  if (Status s = search::parse_search(ctx, type, params, &parsed); !s) return s;
  parsed.query.count = 500;
  for (;;) {
    storage::SearchPage page;
    if (Status s = store.search(parsed.query, &page); !s) return s;
    for (auto& m : page.matches) {
      parsed.query.after_key = m.key;
      out->push_back(std::move(m.resource));
    }
    if (out->size() > kMaxCollected)
      return Status::error(ErrorCategory::Unprocessable, "too-costly", "more than " +
                           std::to_string(kMaxCollected) + " " + type + " resources to examine");
    if (!page.more || page.matches.empty()) return Status::ok();
  }
}

}  // namespace espace::interactions::devices
