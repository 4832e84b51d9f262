// Text forms written by more than one layer of the server (the interactions
// and the audit trail), kept in one place so that they cannot drift apart.
#pragma once

#include <cstdint>
#include <string>

namespace espace::interactions {

// FHIR instant with microseconds, UTC: "2026-11-23T13:20:00.123456Z".
std::string format_instant(int64_t us);

// The RFC 9562 text form of a UUID: 8-4-4-4-12 lower-case hex digits.
std::string uuid_text(const unsigned char (&bytes)[16]);

}  // namespace espace::interactions
