// Compartment membership (hl7.org/fhir/R4/compartmentdefinition.html) as the
// search engine sees it, for layers above interactions (the access rules)
// that must know whose data a resource is without knowing how search works.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/node.h"
#include "espace/fhir/status.h"
#include "espace/storage/storage.h"

namespace espace::interactions {

// Is `resource_type` a member of the `compartment_type` compartment
// ("Patient")? The compartment resource type itself counts as a member.
bool is_compartment_member(const fhir::Definitions& defs, std::string_view compartment_type,
                           std::string_view resource_type);

// Ids of the `compartment_type` compartments `resource` belongs to, from the
// CompartmentDefinition's linking parameters (a Patient is in its own
// compartment). Sorted, without duplicates; empty when it belongs to none.
std::vector<std::string> compartment_owners(const fhir::Definitions& defs, std::string_view compartment_type,
                                            const fhir::Node& resource);

// A search condition holding for resources of `type` (empty: any member
// type, and *member_types receives them) that are in the compartment of at
// least one of `ids`. Invalid when `ids` is empty or malformed; NotFound when
// `type` is not a member.
fhir::Status compartments_condition(const fhir::Definitions& defs, const std::string& compartment_type,
                                    const std::vector<std::string>& ids, const std::string& type,
                                    storage::Condition* out, std::vector<std::string>* member_types);

// Whether `query` (of one type, `query.type`) can only match resources in the
// compartment of one of `ids`, by a condition of its own: a reference
// equality, on ids among `ids` only, through a linking parameter of the
// CompartmentDefinition with `compartment_type` as the reference type, or
// through a parameter that follows a linking one to `compartment_type` alone
// ("DocumentReference.subject.where(resolve() is Patient)", the `patient`
// parameter, linked by `subject`). compartments_condition(ids) would then
// add nothing but cost.
bool confined_to_compartments(const fhir::Definitions& defs, const std::string& compartment_type,
                              const std::vector<std::string>& ids, const storage::SearchQuery& query);

}  // namespace espace::interactions
