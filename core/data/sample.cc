#include "core/data/sample.h"

#include <stdexcept>

namespace align2 {

const char* status_name(Status s) {
  switch (s) {
    case Status::valid: return "valid";
    case Status::invalid: return "invalid";
    case Status::missing_image: return "missing_image";
    case Status::duplicate: return "duplicate";
  }
  return "?";
}

const char* reason_name(Reason r) {
  switch (r) {
    case Reason::none: return "";
    case Reason::not_json: return "not_json";
    case Reason::not_object: return "not_object";
    case Reason::missing_field: return "missing_field";
    case Reason::wrong_type: return "wrong_type";
    case Reason::empty_conversation: return "empty_conversation";
    case Reason::bad_roles: return "bad_roles";
    case Reason::bad_image_tag: return "bad_image_tag";
    case Reason::image_path_absolute: return "image_path_absolute";
    case Reason::image_path_escapes: return "image_path_escapes";
    case Reason::missing_image: return "missing_image";
    case Reason::invalid_utf8: return "invalid_utf8";
    case Reason::record_too_large: return "record_too_large";
    case Reason::duplicate: return "duplicate";
    case Reason::bad_image: return "bad_image";
  }
  return "?";
}

Status status_from_name(const std::string& name) {
  for (Status s : {Status::valid, Status::invalid, Status::missing_image, Status::duplicate})
    if (name == status_name(s)) return s;
  throw std::invalid_argument("unknown record status '" + name + "'");
}

Reason reason_from_name(const std::string& name) {
  for (int r = 0; r <= int(kLastReason); ++r)
    if (name == reason_name(Reason(r))) return Reason(r);
  throw std::invalid_argument("unknown reason code '" + name + "'");
}

}  // namespace align2
