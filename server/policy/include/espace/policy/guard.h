// The one enforcement point: a storage::Storage seen through the rules of one
// request. Every version that leaves the storage toward a response (read,
// vread, history, search matches and _include/_revinclude, conditional
// matches, transaction entries) passes ResourceRules::may_see; every write
// passes ResourceRules::may_write; every search is first narrowed by
// ResourceRules::restrict_search. Interactions know nothing of it: they run
// with RequestGuard::services(), whose store is the guarded one.
//
// Contract: a hidden resource is indistinguishable from an absent one (same
// status, no id, no count, no link). See server/policy/README.md.
#pragma once

#include <memory>

#include "espace/fhir/status.h"
#include "espace/policy/policy.h"
#include "espace/storage/storage.h"

namespace espace::policy {

// The decision on one stored version.
struct Verdict {
  bool visible = false;
  const char* rule = "";  // name of the rule that decided ("GRANT", "MASKED", ...), static storage
};

// The rules of one request for one caller (implemented by the access rules,
// rules.h; tests use simple fakes). Not shared between threads.
class ResourceRules {
 public:
  virtual ~ResourceRules() = default;
  // May the caller see this stored version? Must not throw. Implementations
  // add the patient and rule to `record` for visible versions.
  virtual Verdict may_see(const storage::ResourceVersion& version, AccessRecord* record) = 0;
  // May the caller write `after` (after.deleted for a delete)? `before` is the
  // current stored version (null when there is none). Ok, or Forbidden naming
  // the rule. A `before` the caller may not see must answer exactly as when
  // `before` is null and the write is refused.
  virtual fhir::Status may_write(const storage::ResourceVersion* before, const storage::ResourceVersion& after,
                                 AccessRecord* record) = 0;
  // Narrows a search before it runs (e.g. to the patient compartments the
  // caller may see), or refuses it (Forbidden) when it cannot be answered
  // without an oracle. Called for the top-level query only.
  virtual fhir::Status restrict_search(storage::SearchQuery* query) = 0;
};

// A guard over `base` (which outlives it) applying `rules`.
std::unique_ptr<RequestGuard> make_guard(const interactions::Services& base, std::unique_ptr<ResourceRules> rules);

}  // namespace espace::policy
