/* The default model file, embedded byte for byte (EMOTE_MODEL_FILE is set by the Makefile). */
    .section .rodata
    .balign 64
    .global emote_builtin_model_data
emote_builtin_model_data:
    .incbin EMOTE_MODEL_FILE
emote_builtin_model_end:
    .balign 8
    .global emote_builtin_model_size
emote_builtin_model_size:
    .quad emote_builtin_model_end - emote_builtin_model_data
    .section .note.GNU-stack,"",@progbits
