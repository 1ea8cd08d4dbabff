"""Sentences for calibration and for evaluation, kept apart: no evaluation sentence is ever
used to calibrate. Written for this project; varied in topic, register and length (5 to 128
tokens for evaluation, counted with the MiniLM tokenizer including [CLS] and [SEP])."""

__all__ = ["CALIBRATION", "EVALUATION", "of_length"]

CALIBRATION = [
    "The committee postponed its decision until the budget figures were confirmed.",
    "A small bakery on the corner sells sourdough bread every morning before seven.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Can you send me the slides from yesterday's meeting?",
    "The river flooded the lower town twice in the last decade.",
    "He fixed the bicycle chain with a borrowed tool and a lot of patience.",
    "Interest rates rose for the third consecutive quarter, cooling the housing market.",
    "Our flight was delayed by four hours because of a storm over the Atlantic.",
    "The compiler reports an error when a variable is used before it is declared.",
    "She plays the cello in a string quartet that rehearses on Thursday evenings.",
    "Wash your hands.",
    "The museum's new wing displays ceramics from the Ming dynasty and early Korean pottery.",
    "Volunteers planted three hundred oak saplings along the abandoned railway line, hoping "
    "that in forty years the strip would become a corridor for birds, bats and small mammals "
    "moving between the two forests.",
    "Please restart the router and check whether the green light stays on.",
    "The novel follows a lighthouse keeper who slowly loses touch with the mainland.",
    "Vaccines train the immune system to recognise a pathogen without causing the disease.",
    "I think the soup needs more salt.",
    "The team shipped the update late on Friday, which in hindsight was a mistake.",
    "Glaciers in the Alps have lost more than half of their volume since 1900.",
    "A good password is long, unique, and stored in a password manager.",
    "The orchestra tuned to the oboe's A before the conductor walked on stage.",
    "Quarterly revenue grew eight percent, driven mainly by subscriptions in Asia.",
    "Children learn languages faster when they hear them spoken at home.",
    "The bridge will be closed to traffic for maintenance from Monday to Wednesday.",
    "After the earthquake, engineers inspected every school building in the district, "
    "replacing cracked beams, reinforcing stairwells and adding steel braces to the oldest "
    "classrooms before any pupil was allowed back inside.",
    "Where did I leave my keys?",
    "The recipe calls for two eggs, a cup of flour and a pinch of nutmeg.",
    "Electric buses now make up a third of the city's public transport fleet.",
    "The defendant's lawyer argued that the evidence had been obtained unlawfully.",
    "Honeybees communicate the direction of flowers through a waggle dance.",
    "Turn left at the second traffic light and the pharmacy is on your right.",
    "The satellite transmits images of sea ice every ninety minutes.",
    "Measured over a full year, the heat pump used about a third of the electricity that the "
    "old resistive heaters needed, although the savings were smallest in the coldest weeks of "
    "January when the outdoor temperature stayed far below freezing and the defrost cycle ran "
    "almost continuously through the night.",
    "My grandmother kept every letter she ever received in a wooden box.",
    "The startup raised twelve million dollars to build cheaper batteries.",
    "Stretch for ten minutes before you run.",
]

EVALUATION = [
    "Hello world.",
    "The cat sat on the mat.",
    "A man is playing a guitar on the street.",
    "A woman is playing the violin in a park.",
    "Someone is slicing an onion in the kitchen.",
    "A chef chops vegetables on a wooden board.",
    "The stock market fell sharply after the central bank announced higher interest rates.",
    "Shares dropped when the bank raised rates unexpectedly.",
    "How do I reset my password if I no longer have access to my email account?",
    "I forgot my password and cannot log in to my email.",
    "The train to Edinburgh departs from platform nine at half past eight.",
    "Heavy rain is expected across the north of the country tomorrow afternoon.",
    "The forecast says it will be sunny and warm all weekend.",
    "Neural networks learn representations by adjusting weights through gradient descent.",
    "Deep learning models are trained with backpropagation and stochastic optimization.",
    "The ancient city was buried under volcanic ash for nearly two thousand years.",
    "Pompeii was preserved by the eruption of Mount Vesuvius in 79 AD.",
    "She adopted a rescue dog from the shelter last spring.",
    "They bought a puppy from a breeder in the countryside.",
    "Please turn off your phones during the performance.",
    "The soup was too spicy for the children, so we added yogurt.",
    "Quantum computers use qubits that can exist in superpositions of states.",
    "The football match ended in a draw after extra time.",
    "Both teams scored twice and the game went to penalties.",
    "The library extends its opening hours during the exam period.",
    "FPGAs let engineers build custom digital circuits without fabricating a chip.",
    "An integer-only accelerator avoids floating-point units to save area and power.",
    "Our neighbours are renovating their kitchen and the noise starts at seven every morning.",
    "Mount Everest is the highest mountain above sea level.",
    "The painting was sold at auction for a record price.",
    "Why is the sky blue during the day but red at sunset?",
    "The doctor recommended rest, fluids and a follow-up visit in two weeks.",
    "In the early nineteenth century, the canal carried coal, timber and grain from the inland "
    "valleys to the port, and the towns along its banks grew quickly around the locks, "
    "warehouses and inns that served the boatmen and their horses.",
    "The software update fixes a bug that caused the application to crash when users uploaded "
    "large photos, improves battery life on older devices, and adds a dark mode that many "
    "people had requested in their reviews over the past year.",
    "Researchers sequenced the genomes of several hundred wheat varieties collected from farms "
    "across three continents, and found that a handful of genes controlling flowering time and "
    "drought tolerance had been repeatedly selected by farmers long before modern breeding "
    "programs began, which suggests that traditional varieties still hold useful diversity "
    "for adapting crops to a warmer and drier climate in the coming decades, especially in "
    "regions where irrigation is expensive or unavailable.",
    "When the power failed in the middle of the night, the hospital's backup generators "
    "started within seconds, the intensive care unit kept running on its batteries, and the "
    "staff moved the most vulnerable patients to the wing that still had heating while "
    "technicians traced the fault to a flooded substation two streets away; by morning the "
    "grid operator had rerouted supply, the generators were switched off, and the only sign "
    "of the incident was a long report filed by the night manager describing every step.",
    "The survey team spent three summers mapping the coastline, wading through tidal channels "
    "at dawn, measuring the height of the dunes with a laser, counting nesting terns on the "
    "gravel spits and recording how far the winter storms had pushed the shingle inland; their "
    "final report concluded that the sea wall built in the nineteen seventies had starved the "
    "beaches further south of sand, that the salt marsh behind it was slowly drowning, and that "
    "letting the sea back in through a managed breach would cost less over fifty years than "
    "rebuilding the wall, protect more homes, and give the marsh birds room to move as the sea "
    "level rose.",
]


def of_length(tokenize, length):
    """A text that ``tokenize`` (a model's, ``texts -> [ids]``) makes exactly ``length`` tokens
    of: words of the evaluation set added one by one, skipping any that would overshoot."""
    text = ""
    for word in " ".join(EVALUATION).split():
        trial = f"{text} {word}".strip()
        n = len(tokenize([trial])[0])
        if n <= length:
            text = trial
        if n == length:
            return text
    raise ValueError(f"Sentence length must be reachable with the evaluation set's words, not "
                     f"{length} tokens")
