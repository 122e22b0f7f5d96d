# Writes help2man's include file for recd.1: a COMMANDS section with the
# `recd COMMAND --help` text of every command that `recd --help` lists, so
# that the man page documents each command's options and follows the binary.
#   cmake -DRECD=path/to/recd -DOUTPUT=commands.h2m -P man-commands.cmake
execute_process(COMMAND ${RECD} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${RECD} --help failed (${rc})")
endif()
# The command list: the lines "  NAME summary" after "commands:".
string(REGEX REPLACE "^.*\ncommands:\n" "" listing "${help}")
string(REPLACE "\n" ";" lines "${listing}")
set(names "")
foreach(line IN LISTS lines)
  if(line MATCHES "^  ([a-z]+) ")
    list(APPEND names ${CMAKE_MATCH_1})
  endif()
endforeach()
if(NOT names)
  message(FATAL_ERROR "no commands in the output of ${RECD} --help")
endif()

set(page "[SYNOPSIS]\n.B recd\n\\fICOMMAND\\fR [\\fIoptions\\fR]\n.br\n.B recd\n\\fICOMMAND\\fR \\-\\-help\n.br\n.B recd\n\\-\\-version\n[COMMANDS]\n")
foreach(name IN LISTS names)
  execute_process(COMMAND ${RECD} ${name} --help OUTPUT_VARIABLE text RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${RECD} ${name} --help failed (${rc})")
  endif()
  # roff: a backslash is \e, a minus is \-, and a line may not start with a
  # control character (. or ').
  string(REPLACE "\\" "\\e" text "${text}")
  string(REPLACE "-" "\\-" text "${text}")
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" text "${text}")
  string(APPEND page ".SS \"recd ${name}\"\n.nf\n${text}.fi\n")
endforeach()
string(APPEND page "[SEE ALSO]\n\\fI/usr/share/doc/recd/README.md\\fR (README.md of the source tree): input formats,\n"
                  "the gRPC API, operating the service (\\fBrecd.service\\fR, its flags in\n"
                  "\\fI/etc/default/recd\\fR).\n")
file(WRITE ${OUTPUT} "${page}")
