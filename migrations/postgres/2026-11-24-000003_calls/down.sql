DROP TABLE transcript_lines;
DROP TABLE calls;
