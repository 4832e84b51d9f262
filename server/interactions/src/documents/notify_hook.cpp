// The outbox rule: which writes raise a notification (notify.h).
#include "espace/interactions/notify.h"

namespace espace::interactions {

namespace {

// The Patient a DocumentReference is about, from the index rows already
// computed for the write (no parsing on the writer thread): the "patient"
// parameter, else a "subject" that references a Patient.
std::string patient_of(const std::vector<storage::IndexEntry>& index) {
  for (const char* param : {"patient", "subject"})
    for (const storage::IndexEntry& e : index)
      if (e.param == param && e.kind == "reference" && e.system == "Patient" && !e.value.empty()) return e.value;
  return {};
}

}  // namespace

storage::OutboxRule document_outbox_rule() {
  return [](const storage::ResourceVersion& written, bool created, const std::vector<storage::IndexEntry>& index,
            std::vector<storage::OutboxEvent>* events) {
    if (!created || written.deleted || written.type != "DocumentReference") return;
    storage::OutboxEvent e;
    e.topic = kDocumentAddedTopic;
    e.patient = patient_of(index);
    e.resource = written.type + "/" + written.id;
    events->push_back(std::move(e));
  };
}

}  // namespace espace::interactions
