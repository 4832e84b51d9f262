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

bool confined_to_compartments(const fhir::Definitions& defs, const std::string& compartment_type,
                              const std::vector<std::string>& ids, const storage::SearchQuery& query) {
  if (query.type.empty() || query.type == compartment_type || ids.empty()) return false;
  const search::Registry& registry = search::Registry::get(defs);
  const auto* members = registry.compartment(compartment_type);
  if (!members) return false;
  auto member = members->find(query.type);
  if (member == members->end()) return false;
  const std::vector<std::string>& links = member->second;
  const std::string to_compartment_only = ".where(resolve() is " + compartment_type + ")";
  // Rows of `param` name compartment_type resources only, and only ones a linking parameter also names.
  auto follows_a_link_to_the_compartment_only = [&](const std::string& param) {
    const search::SearchParamDef* def = registry.find(query.type, param);
    if (!def || !def->expression) return false;
    for (const std::string& link : links) {
      const search::SearchParamDef* link_def = registry.find(query.type, link);
      if (link_def && link_def->expression && def->expression->text() == link_def->expression->text() + to_compartment_only)
        return true;
    }
    return false;
  };
  for (const storage::Condition& c : query.all_of) {
    if (c.kind != storage::Condition::Kind::AnyOf || c.negate || c.any_of.empty()) continue;
    bool confines = true;
    for (const storage::IndexTest& t : c.any_of) {
      const bool equal_id = !t.target && t.bounds.empty() && t.value_op == storage::TextOp::Equal &&
                            (t.kind.empty() || t.kind == "reference") &&
                            std::find(ids.begin(), ids.end(), t.value) != ids.end();
      // A bare id through a linking parameter could name another type's resource with that id.
      const bool through_link = t.system == compartment_type &&
                                std::find(links.begin(), links.end(), t.param) != links.end();
      const bool typed = !t.system || *t.system == compartment_type;
      if (!equal_id || !(through_link || (typed && follows_a_link_to_the_compartment_only(t.param)))) {
        confines = false;
        break;
      }
    }
    if (confines) return true;
  }
  return false;
}

}  // namespace espace::interactions
