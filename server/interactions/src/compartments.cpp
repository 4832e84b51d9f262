#include "espace/interactions/compartments.h"

#include <algorithm>

#include "common.h"
#include "search/query.h"
#include "search/registry.h"

namespace espace::interactions {

bool is_compartment_member(const fhir::Definitions& defs, std::string_view compartment_type,
                           std::string_view resource_type) {
  if (compartment_type == resource_type) return true;
  const auto* members = search::Registry::get(defs).compartment(compartment_type);
  return members && members->find(resource_type) != members->end();
}

std::vector<std::string> compartment_owners(const fhir::Definitions& defs, std::string_view compartment_type,
                                            const fhir::Node& resource) {
  std::vector<std::string> owners;
  const search::Registry& registry = search::Registry::get(defs);
  std::string_view type = fhir::resource_type(resource);
  if (type == compartment_type) {
    // Only the resource itself: a Patient.link to another patient does not
    // make this patient's record part of the other one's.
    if (std::string_view id = fhir::resource_id(resource); !id.empty()) owners.emplace_back(id);
    return owners;
  }
  const auto* members = registry.compartment(compartment_type);
  if (!members) return owners;
  auto it = members->find(type);
  if (it == members->end()) return owners;
  for (const storage::IndexEntry& row : registry.index(resource)) {
    if (row.kind != "reference" || row.system != compartment_type) continue;
    if (std::find(it->second.begin(), it->second.end(), row.param) == it->second.end()) continue;
    owners.push_back(row.value);
  }
  std::sort(owners.begin(), owners.end());
  owners.erase(std::unique(owners.begin(), owners.end()), owners.end());
  return owners;
}

fhir::Status compartments_condition(const fhir::Definitions& defs, const std::string& compartment_type,
                                    const std::vector<std::string>& ids, const std::string& type,
                                    storage::Condition* out, std::vector<std::string>* member_types) {
  if (ids.empty())
    return fhir::Status::error(fhir::ErrorCategory::Invalid, "invalid", "no compartment to restrict the search to");
  const search::Registry& registry = search::Registry::get(defs);
  *out = storage::Condition();
  out->kind = storage::Condition::Kind::AnyOf;
  for (const std::string& id : ids) {
    storage::Condition one;
    std::vector<std::string> types;
    if (fhir::Status s = search::compartment_condition(registry, compartment_type, id, type, &one, &types); !s)
      return s;
    for (auto& t : one.any_of) out->any_of.push_back(std::move(t));
    if (member_types && member_types->empty()) *member_types = std::move(types);
  }
  // The compartment resource itself is linked by its id, not by an index row.
  if (type == compartment_type) {
    out->kind = storage::Condition::Kind::Id;
    out->any_of.clear();
    out->ids = ids;
  }
  return fhir::Status::ok();
}

}  // namespace espace::interactions
