// The patient's vaccination booklet, the schedule's recommendation and the
// organised-screening reminders, as instance operations on Patient:
//
//   GET      Patient/[id]/$vaccination-booklet
//       Bundle (type collection): one List per vaccine group (code: the group,
//       entries: its Immunizations by date), then every Immunization once,
//       sorted by its first group then date. Each Immunization entry carries
//       the extension .../vaccination-reliability (professional,
//       declared-documented, declared, unknown) derived from primarySource and
//       reportOrigin. entered-in-error records are left out.
//   GET|POST Patient/[id]/$immunization-recommendation[?date=YYYY-MM-DD]
//       ImmunizationRecommendation (not stored) from the French schedule
//       (server/interactions/data/vaccination-schedule.json); date defaults to
//       today (UTC). Each recommendation names its rule in the extension
//       .../vaccination-schedule-rule (valueCoding in the schedule's rule system).
//       Only completed records count, and not those declared from memory
//       (reliability 'declared'): without written proof a dose is not counted.
//       When no rule concerns the patient on that date, an OperationOutcome
//       (200, severity information) says so: recommendation is 1..* and an
//       ImmunizationRecommendation cannot be empty.
//   GET      Patient/[id]/$screening-reminders[?date=YYYY-MM-DD]
//       Bundle (type collection) of CommunicationRequest reminders from
//       server/interactions/data/screening-reminders.json.
#pragma once

#include "espace/interactions/api.h"

namespace espace::interactions {

FhirResponse vaccination_booklet_operation(const Services& services, const FhirRequest& request);
FhirResponse immunization_recommendation_operation(const Services& services, const FhirRequest& request);
FhirResponse screening_reminders_operation(const Services& services, const FhirRequest& request);

}  // namespace espace::interactions
