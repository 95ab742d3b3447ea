"""Models: the Keras CNN-LSTM networks, compiled and ready to fit.

`networks.build_model(name, size)` builds `book`, `fast` or `rowcol` from the layers in
`layers`; `variants` builds `fast` from its alternative layers (ablation, equivalence tests);
`book_workflow` is the book's own generator, model and training, the baseline.

Takes what the input stage yields (uint8 frames, or packed frames with `packed_input=True`);
hands the training stage a compiled `keras.Model`.
"""
