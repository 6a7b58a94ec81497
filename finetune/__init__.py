"""finetune: the BERT NER fine-tuning smoke benchmark."""
