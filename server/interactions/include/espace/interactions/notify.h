// Notifications when a document is added to a patient's record (issue 7).
//
// Transactional outbox: the storage calls document_outbox_rule() inside the
// transaction of every write, so a created DocumentReference — whatever the
// channel: POST, PUT, batch/transaction, ITI-65, $ingest-cda — records one
// "document-added" event that commits or rolls back with the document.
// NotificationWorker, on its own thread, delivers due events to the matching
// active Subscriptions (hl7.org/fhir/R4/subscription.html): rest-hook over
// HTTP, email through an SMTP relay. Failures are retried with exponential
// back-off; after the last attempt the event is settled as failed and each
// Subscription that could not be served is set to status "error".
//
// Delivery is at least once: an event is marked delivered only after every
// matching Subscription accepted it, so a crash in between delivers again
// after the restart. Subscriptions already served are remembered on the
// event (OutboxEvent::delivered_to), so a retry only goes to those that
// failed.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "espace/interactions/api.h"

namespace espace::interactions {

inline constexpr const char* kDocumentAddedTopic = "document-added";

// Raises a document-added event (patient: the id the document's subject or
// patient reference names, resource: "DocumentReference/<id>") for each
// DocumentReference created (first version); nothing for anything else.
storage::OutboxRule document_outbox_rule();

struct NotifyOptions {
  std::string smtp_host;              // empty: email channels fail (and are retried) with a clear error
  uint16_t smtp_port = 25;
  std::string smtp_from = "espace@localhost";
  int64_t retry_base_ms = 1000;       // first retry delay, doubled per attempt
  int64_t retry_cap_ms = 300000;      // longest delay between attempts
  int max_attempts = 10;              // then the event is settled as failed
  int64_t poll_ms = 500;              // how often due events are looked for
  int64_t io_timeout_ms = 10000;      // bound on one delivery (connect, send, answer)
};

class NotificationWorker {
 public:
  // `services.store` must be the unguarded storage (the worker acts for the
  // server, not for a caller); `services.defs` is needed to match criteria.
  NotificationWorker(const Services& services, NotifyOptions options);
  ~NotificationWorker();  // stop()
  NotificationWorker(const NotificationWorker&) = delete;
  NotificationWorker& operator=(const NotificationWorker&) = delete;

  void start();
  // Finishes the event in hand (bounded by io_timeout_ms) and joins the thread.
  void stop();
  // Delivers the events due now once, on the calling thread; *settled counts
  // the events that were attempted.
  fhir::Status run_once(int* settled);

 private:
  void loop();
  // active_subscriptions: the ids of the active Subscriptions, looked up once per pass.
  fhir::Status handle(storage::OutboxEvent& event, const std::vector<std::string>& active_subscriptions);

  Services services_;
  NotifyOptions options_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
};

}  // namespace espace::interactions
