// POST Patient/[id]/$materialize-reminders[?date=YYYY-MM-DD]   (no body)
//
// Turns what $immunization-recommendation (lines due or overdue) and
// $screening-reminders (due or upcoming) answer for the patient into stored
// CommunicationRequests (category reminder, subject and recipient the
// patient), so that the reminders appear in the patient's space and its
// notifications. Idempotent: each reminder carries the identifier
//   https://espace.example/fhir/sid/reminder | vaccination:<rule>:<dose>:<due>
//                                            | screening:<programme>:<due>
// and is written by a conditional create on that identifier and the patient:
// a second run writes nothing new. Answers a Bundle (batch-response) with one
// entry per reminder: 201 written now, 200 already there.
// Writes go through the caller's guarded store: the policy decides who may
// (professionals and systems with access to the record; not patients).
#pragma once

#include "espace/interactions/api.h"

namespace espace::interactions {

inline constexpr const char* kReminderIdentifierSystem = "https://espace.example/fhir/sid/reminder";

FhirResponse materialize_reminders_operation(const Services& services, const FhirRequest& request);

}  // namespace espace::interactions
